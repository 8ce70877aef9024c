"""Train a small MLP classifier with jloss + optax and print the loss falling.

Run: python examples/train_small.py
"""

import jax
import jax.numpy as jnp
import optax

import jloss


def spirals(key, n=512, classes=3):
    k1, k2 = jax.random.split(key)
    labels = jax.random.randint(k1, (n,), 0, classes)
    r = jax.random.uniform(k2, (n,))
    theta = r * 4.0 + labels * (2 * jnp.pi / classes)
    x = jnp.stack([r * jnp.cos(theta), r * jnp.sin(theta)], axis=-1)
    return x, labels


def init(key, sizes=(2, 64, 64, 3)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [(jax.random.normal(k, (a, b)) / jnp.sqrt(a), jnp.zeros(b))
            for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=False)]


def forward(params, x):
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return x @ w + b


def main():
    x, y = spirals(jax.random.key(0))
    params = init(jax.random.key(1))
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(
            lambda p: jloss.sparse_categorical_cross_entropy(forward(p, x), y, label_smoothing=0.05)
        )(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    for i in range(301):
        params, opt_state, loss = step(params, opt_state)
        if i % 50 == 0:
            acc = jnp.mean(jnp.argmax(forward(params, x), -1) == y)
            print(f"step {i:4d}  loss {float(loss):.4f}  accuracy {float(acc):.3f}")


if __name__ == "__main__":
    main()
