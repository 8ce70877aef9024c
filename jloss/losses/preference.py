"""Preference losses on sequence log-probabilities (DPO, IPO, ORPO, SimPO, CPO, KTO).

Every loss here takes per-sequence log-probabilities, one per pair, of shape ``(B,)`` (or
any shape: the losses are elementwise over pairs) (sums,
or means, over each sequence's tokens: :func:`sequence_log_probs` of
:func:`jloss.linear_log_probs`) and returns the loss per preference pair (or,
for KTO, per example) through the shared masks, weights and reductions.
"""

import jax
import jax.numpy as jnp

from jloss._core import checks
from jloss._core.reduce import fill_masked, loss_mask, reduce_loss
from jloss.kernels.common import keep_inputs

_DPO_TYPES = ("sigmoid", "hinge", "ipo", "robust")
_CPO_TYPES = ("sigmoid", "hinge", "ipo")


def _check_logps(**arrays):
    """Float sequence log-probabilities of one shape (typically ``(B,)``); returns that shape."""
    checks.check_float(**arrays)
    checks.check_same_shape(**arrays)
    return jnp.shape(next(iter(arrays.values())))


def _check_loss_type(loss_type, allowed, label_smoothing):
    if loss_type not in allowed:
        raise ValueError(f"loss_type must be one of {allowed}, got {loss_type!r}")
    checks.check_range("label_smoothing", label_smoothing, low=0, high=1)
    if loss_type == "robust":
        checks.check_range("label_smoothing", label_smoothing, low=0, high=0.5, high_open=True)
    elif loss_type in ("hinge", "ipo") and not checks.is_zero(label_smoothing):
        raise ValueError(f"label_smoothing applies to loss_type 'sigmoid' and 'robust', not {loss_type!r}")


def _margin_loss(logits, beta, loss_type, label_smoothing):
    r"""The per-pair loss of a preference margin ``u`` (TRL's ``loss_type`` choices).

    With ``s`` the label smoothing:

    * ``"sigmoid"``: ``-(1 - s) log σ(β u) - s log σ(-β u)`` (DPO; conservative DPO for s > 0),
    * ``"robust"``: ``(-(1 - s) log σ(β u) + s log σ(-β u)) / (1 - 2 s)`` (robust DPO),
    * ``"hinge"``: ``max(0, 1 - β u)`` (SLiC),
    * ``"ipo"``: ``(u - 1 / (2 β))^2`` (IPO).
    """
    z = beta * logits
    if loss_type in ("sigmoid", "robust") and checks.is_zero(label_smoothing):
        # no smoothing term: XLA cannot drop ``0 * z`` (it is NaN for infinite z), and the
        # product costs a broadcast zero and an extra (B,) buffer in the compiled gradient
        return -jax.nn.log_sigmoid(z)
    # log σ(-z) = log σ(z) - z: one log-sigmoid serves both terms
    if loss_type == "sigmoid":
        return label_smoothing * z - jax.nn.log_sigmoid(z)
    if loss_type == "robust":
        return -jax.nn.log_sigmoid(z) - label_smoothing * z / (1 - 2 * label_smoothing)
    if loss_type == "hinge":
        return jax.nn.relu(1 - z)
    return (logits - 1 / (2 * beta)) ** 2


def _pair_inputs(reduction, weights, where, **arrays):
    """Checks of a pairwise loss; returns ``(mask, arrays)`` (lists as arrays).

    Masked entries may hold NaN: each loss selects its margin (or, where the
    margin's derivative could be NaN there, its inputs) with :func:`fill_masked`,
    one select instead of one per input.
    """
    arrays = {name: checks.array_likes(a) for name, a in arrays.items()}
    weights, where = checks.array_likes(weights, where)
    shape = _check_logps(**arrays)
    checks.check_convention(reduction, weights, where, shape)
    return loss_mask(where, shape), list(arrays.values())


def dpo(policy_chosen, policy_rejected, reference_chosen, reference_rejected, *, beta=0.1,
        loss_type="sigmoid", label_smoothing=0.0, weights=None, where=None, reduction="mean"):
    r"""Direct Preference Optimization loss (and its IPO, hinge and robust variants) per pair.

    .. math::
       u = \big(\log \pi(y_w) - \log \pi(y_l)\big) - \big(\log \pi_\mathrm{ref}(y_w)
       - \log \pi_\mathrm{ref}(y_l)\big), \qquad
       \ell_\mathrm{sigmoid} = -(1 - s) \log \sigma(\beta u) - s \log \sigma(-\beta u)

    and, by ``loss_type``: ``"robust"``
    :math:`\big(-(1 - s) \log \sigma(\beta u) + s \log \sigma(-\beta u)\big) / (1 - 2s)`,
    ``"hinge"`` :math:`\max(0, 1 - \beta u)`, ``"ipo"`` :math:`(u - 1/(2\beta))^2`.
    Fine-tuning a language model on pairs of a preferred (chosen, :math:`y_w`) and
    a dispreferred (rejected, :math:`y_l`) completion of the same prompt, against a
    frozen reference model; as TRL's ``DPOTrainer`` (its ``loss_type`` values of
    the same names). The arguments are sequence log-probabilities (the sum over
    each completion's tokens, :func:`sequence_log_probs`). Gradients flow into all
    four; the reference log-probabilities come from a frozen model (compute them
    outside the differentiated function, or wrap them in ``jax.lax.stop_gradient``).

    Args:
      policy_chosen: ``(B,)`` float log-probabilities of the chosen completions under the policy.
      policy_rejected: ``(B,)`` the same for the rejected completions.
      reference_chosen: ``(B,)`` chosen completions under the reference model.
      reference_rejected: ``(B,)`` rejected completions under the reference model.
      beta: ``β > 0``, the strength of the implicit KL penalty towards the reference.
      loss_type: ``"sigmoid"`` (DPO), ``"hinge"`` (SLiC), ``"ipo"`` or ``"robust"``.
      label_smoothing: ``s``, the assumed probability that a preference label is
        flipped: in [0, 1] for ``"sigmoid"`` (conservative DPO), in [0, 0.5) for
        ``"robust"``; must be 0 for ``"hinge"`` and ``"ipo"``.
      weights: non-negative weights broadcastable to ``(B,)``, or None.
      where: boolean mask broadcastable to ``(B,)``, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar (float64 for float64 inputs) for ``"mean"`` and ``"sum"``;
      the loss per pair, shape ``(B,)``, for ``"none"``.

    Raises:
      ValueError: inputs of different shapes, ``beta <= 0``, an
        unknown ``loss_type`` or ``reduction``, ``label_smoothing`` out of range.
      TypeError: integer inputs, or a ``where`` that is not boolean.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> chosen, rejected = jnp.array([-10.0, -12.0]), jnp.array([-11.0, -11.0])
      >>> ref_chosen, ref_rejected = jnp.array([-10.5, -12.0]), jnp.array([-10.5, -12.0])
      >>> round(float(jloss.dpo(chosen, rejected, ref_chosen, ref_rejected)), 4)
      0.6944
      >>> round(float(jloss.dpo(chosen, rejected, ref_chosen, ref_rejected, loss_type="ipo")), 4)
      26.0

    References:
      Rafailov, R. et al. (2023). Direct Preference Optimization: Your Language Model
      is Secretly a Reward Model; Azar, M. G. et al. (2023). A General Theoretical
      Paradigm to Understand Learning from Human Preferences (IPO); Zhao, Y. et al.
      (2023). SLiC-HF; Mitchell, E. (2023). A note on DPO with noisy preferences
      (conservative DPO); Chowdhury, S. R. et al. (2024). Provably Robust DPO;
      TRL ``DPOTrainer``.
    """
    checks.check_range("beta", beta, low=0, low_open=True)
    _check_loss_type(loss_type, _DPO_TYPES, label_smoothing)
    mask, (pc, pr, rc, rr) = _pair_inputs(
        reduction, weights, where, policy_chosen=policy_chosen, policy_rejected=policy_rejected,
        reference_chosen=reference_chosen, reference_rejected=reference_rejected)
    loss = keep_inputs(lambda pc, pr, rc, rr: _margin_loss(
        fill_masked((pc - pr) - (rc - rr), mask), beta, loss_type, label_smoothing),
        pc, pr, rc, rr, cast=True)
    return reduce_loss(loss, mask, weights, reduction)


@jax.custom_jvp
def _log_odds(logps):
    """``log(p / (1 - p))`` of ``p = exp(logps)``: ``logps - log(1 - exp(logps))``."""
    return logps - jnp.log(-jnp.expm1(logps))


@_log_odds.defjvp
def _log_odds_jvp(primals, tangents):
    # d/dx (x - log(1 - e^x)) = 1 / (1 - e^x): the one expm1 of the value serves the derivative
    (x,), (t,) = primals, tangents
    q = -jnp.expm1(x)
    return x - jnp.log(q), t / q


def _nll_term(chosen_nll, weight, shape):
    if chosen_nll is None:
        return 0.0
    checks.check_float(chosen_nll=chosen_nll)
    checks.check_broadcastable("chosen_nll", chosen_nll, shape)
    return weight * jnp.asarray(chosen_nll)


def orpo(chosen_logps, rejected_logps, *, beta=0.1, chosen_nll=None, weights=None, where=None,
         reduction="mean"):
    r"""Odds Ratio Preference Optimization loss per pair (reference-free, one stage).

    .. math::
       \ell = \mathrm{NLL}_w - \beta \log \sigma\Big(\log \frac{p_w}{1 - p_w}
       - \log \frac{p_l}{1 - p_l}\Big), \qquad p = \exp(\text{logps})

    Supervised fine-tuning and preference alignment in one loss, without a
    reference model; as TRL's ``ORPOTrainer`` (``policy_nll_loss - beta *
    log_odds_ratio``). The log-probabilities are length-normalised (the mean over
    each completion's tokens, ``sequence_log_probs(..., average=True)``) and must
    be ``< 0``; the log-odds are computed as ``logps - log(-expm1(logps))``.

    Args:
      chosen_logps: ``(B,)`` float mean per-token log-probabilities of the chosen completions.
      rejected_logps: ``(B,)`` the same for the rejected completions.
      beta: ``β >= 0``, the weight of the odds-ratio term (TRL's ``beta``, the
        paper's λ).
      chosen_nll: the supervised negative log-likelihood of the chosen
        completions, broadcastable to ``(B,)`` (per pair, or one scalar), added
        to every pair's loss; None for the odds-ratio term alone.
      weights: non-negative weights broadcastable to ``(B,)``, or None.
      where: boolean mask broadcastable to ``(B,)``, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; the loss per pair ``(B,)`` for ``"none"``.

    Raises:
      ValueError: inputs of different shapes, ``beta < 0``, bad ``reduction``.
      TypeError: integer inputs, or a ``where`` that is not boolean.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> chosen, rejected = jnp.array([-0.5, -1.0]), jnp.array([-1.5, -0.8])
      >>> round(float(jloss.orpo(chosen, rejected, beta=1.0)), 4)
      0.5236
      >>> round(float(jloss.orpo(chosen, rejected, beta=1.0, chosen_nll=-chosen)), 4)
      1.2736

    References:
      Hong, J., Lee, N. and Thorne, J. (2024). ORPO: Monolithic Preference
      Optimization without Reference Model; TRL ``ORPOTrainer``.
    """
    checks.check_range("beta", beta, low=0)
    mask, (c, r) = _pair_inputs(reduction, weights, where, chosen_logps=chosen_logps,
                                rejected_logps=rejected_logps)

    def odds_ratio(c, r):
        # masked pairs get a finite log-odds (of p = 1 / e): the derivative divides by 1 - p
        c, r = fill_masked(c, mask, -1.0), fill_masked(r, mask, -1.0)
        return -beta * jax.nn.log_sigmoid(_log_odds(c) - _log_odds(r))

    loss = keep_inputs(odds_ratio, c, r, cast=True) + _nll_term(chosen_nll, 1.0, jnp.shape(c))
    return reduce_loss(loss, mask, weights, reduction)


def simpo(chosen_logps, rejected_logps, *, beta=2.0, gamma=0.5, label_smoothing=0.0, weights=None,
          where=None, reduction="mean"):
    r"""Simple Preference Optimization loss per pair: a length-normalised, reference-free DPO.

    .. math::
       u = \beta\,(\bar\ell_w - \bar\ell_l) - \gamma, \qquad
       \ell = -(1 - s) \log \sigma(u) - s \log \sigma(-u)

    where :math:`\bar\ell` is the mean per-token log-probability of a completion
    (``sequence_log_probs(..., average=True)``) and γ the target reward margin.
    As the SimPO paper and TRL's ``CPOTrainer`` with ``loss_type="simpo"`` (whose
    ``simpo_gamma`` is this γ).

    Args:
      chosen_logps: ``(B,)`` float mean per-token log-probabilities of the chosen completions.
      rejected_logps: ``(B,)`` the same for the rejected completions.
      beta: ``β > 0``, the reward scale.
      gamma: γ, the target reward margin.
      label_smoothing: ``s`` in [0, 1].
      weights: non-negative weights broadcastable to ``(B,)``, or None.
      where: boolean mask broadcastable to ``(B,)``, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; the loss per pair ``(B,)`` for ``"none"``.

    Raises:
      ValueError: inputs of different shapes, ``beta <= 0``,
        ``label_smoothing`` outside [0, 1], bad ``reduction``.
      TypeError: integer inputs, or a ``where`` that is not boolean.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> chosen, rejected = jnp.array([-0.5, -1.0]), jnp.array([-1.5, -0.8])
      >>> round(float(jloss.simpo(chosen, rejected)), 4)
      0.7213

    References:
      Meng, Y., Xia, M. and Chen, D. (2024). SimPO: Simple Preference Optimization
      with a Reference-Free Reward; TRL ``CPOTrainer`` (``loss_type="simpo"``).
    """
    checks.check_range("beta", beta, low=0, low_open=True)
    _check_loss_type("sigmoid", _CPO_TYPES, label_smoothing)
    mask, (c, r) = _pair_inputs(reduction, weights, where, chosen_logps=chosen_logps,
                                rejected_logps=rejected_logps)
    loss = keep_inputs(lambda c, r: _margin_loss(
        fill_masked(c - r, mask) - gamma / beta, beta, "sigmoid", label_smoothing), c, r, cast=True)
    return reduce_loss(loss, mask, weights, reduction)


def cpo(chosen_logps, rejected_logps, *, beta=0.1, loss_type="sigmoid", label_smoothing=0.0,
        alpha=1.0, chosen_nll=None, weights=None, where=None, reduction="mean"):
    r"""Contrastive Preference Optimization loss per pair: DPO without a reference, plus an NLL term.

    .. math::
       u = \log \pi(y_w) - \log \pi(y_l), \qquad
       \ell = -(1 - s) \log \sigma(\beta u) - s \log \sigma(-\beta u) + \alpha\, \mathrm{NLL}_w

    with ``loss_type="hinge"`` :math:`\max(0, 1 - \beta u)` or ``"ipo"``
    :math:`(u - 1/(2\beta))^2` in place of the sigmoid term. The preference term
    of DPO with the reference model dropped, regularised by the chosen
    completions' negative log-likelihood; as TRL's ``CPOTrainer`` (``loss_type``
    and ``cpo_alpha``).

    Args:
      chosen_logps: ``(B,)`` float sequence log-probabilities of the chosen completions.
      rejected_logps: ``(B,)`` the same for the rejected completions.
      beta: ``β > 0``.
      loss_type: ``"sigmoid"``, ``"hinge"`` or ``"ipo"``.
      label_smoothing: ``s`` in [0, 1] (``"sigmoid"`` only).
      alpha: ``α >= 0``, the weight of ``chosen_nll``.
      chosen_nll: the chosen completions' negative log-likelihood, broadcastable to
        ``(B,)``, or None for the preference term alone.
      weights: non-negative weights broadcastable to ``(B,)``, or None.
      where: boolean mask broadcastable to ``(B,)``, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; the loss per pair ``(B,)`` for ``"none"``.

    Raises:
      ValueError: inputs of different shapes, ``beta <= 0``,
        ``alpha < 0``, bad ``loss_type``, ``label_smoothing`` or ``reduction``.
      TypeError: integer inputs, or a ``where`` that is not boolean.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> chosen, rejected = jnp.array([-10.0, -12.0]), jnp.array([-11.0, -11.0])
      >>> round(float(jloss.cpo(chosen, rejected)), 4)
      0.6944
      >>> round(float(jloss.cpo(chosen, rejected, chosen_nll=-chosen)), 4)
      11.6944

    References:
      Xu, H. et al. (2024). Contrastive Preference Optimization: Pushing the
      Boundaries of LLM Performance in Machine Translation; TRL ``CPOTrainer``.
    """
    checks.check_range("beta", beta, low=0, low_open=True)
    checks.check_range("alpha", alpha, low=0)
    _check_loss_type(loss_type, _CPO_TYPES, label_smoothing)
    mask, (c, r) = _pair_inputs(reduction, weights, where, chosen_logps=chosen_logps,
                                rejected_logps=rejected_logps)
    loss = keep_inputs(lambda c, r: _margin_loss(fill_masked(c - r, mask), beta, loss_type,
                                                 label_smoothing), c, r, cast=True)
    loss = loss + _nll_term(chosen_nll, alpha, jnp.shape(c))
    return reduce_loss(loss, mask, weights, reduction)


def kto(policy_logps, reference_logps, desirable, *, beta=0.1, policy_kl_logps=None,
        reference_kl_logps=None, desirable_weight=1.0, undesirable_weight=1.0, weights=None,
        where=None, reduction="mean"):
    r"""Kahneman-Tversky Optimization loss per example: unpaired desirable / undesirable completions.

    .. math::
       r = \log \pi(y) - \log \pi_\mathrm{ref}(y), \qquad
       \ell = \begin{cases} \lambda_D \big(1 - \sigma(\beta (r - z_0))\big) & y \text{ desirable} \\
       \lambda_U \big(1 - \sigma(\beta (z_0 - r))\big) & y \text{ undesirable} \end{cases}

    with the reference point :math:`z_0 = \max\big(0, \mathrm{mean}(\log \pi(y')
    - \log \pi_\mathrm{ref}(y'))\big)` estimated on mismatched completions
    ``y'`` (``policy_kl_logps``, ``reference_kl_logps``) and carrying no gradient,
    or 0 when they are not given. Alignment from a thumbs-up / thumbs-down signal
    per completion instead of pairs; as TRL's ``KTOTrainer`` (``desirable_weight``,
    ``undesirable_weight``; its KL estimate, its ``calculate_KL=False`` gives 0).
    The mean of the reference point is taken over every entry of
    ``policy_kl_logps`` (no mask).

    Args:
      policy_logps: ``(B,)`` float sequence log-probabilities under the policy.
      reference_logps: ``(B,)`` the same under the reference model.
      desirable: ``(B,)`` boolean (or integer 0 / 1), True for a desirable completion.
      beta: ``β > 0``.
      policy_kl_logps: ``(K,)`` policy log-probabilities of mismatched
        prompt-completion pairs, or None (then ``z_0 = 0``).
      reference_kl_logps: ``(K,)`` the same under the reference model (given
        together with ``policy_kl_logps``).
      desirable_weight: ``λ_D >= 0``.
      undesirable_weight: ``λ_U >= 0``.
      weights: non-negative weights broadcastable to ``(B,)``, or None.
      where: boolean mask broadcastable to ``(B,)``, or None.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (:doc:`/conventions`); the
        mean counts every example once (λ is part of the loss).

    Returns:
      A float32 scalar for ``"mean"`` and ``"sum"``; the loss per example ``(B,)`` for ``"none"``.

    Raises:
      ValueError: inputs of different shapes, only one of the
        KL log-probabilities, ``beta <= 0``, negative class weights, bad ``reduction``.
      TypeError: integer log-probabilities, a float ``desirable``, or a ``where`` that is not boolean.
      LossInputError: an integer ``desirable`` other than 0 / 1 (eager calls).

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> policy, reference = jnp.array([-9.0, -12.0]), jnp.array([-10.0, -11.0])
      >>> desirable = jnp.array([True, False])
      >>> round(float(jloss.kto(policy, reference, desirable)), 4)
      0.475

    References:
      Ethayarajh, K. et al. (2024). KTO: Model Alignment as Prospect Theoretic
      Optimization; TRL ``KTOTrainer``.
    """
    checks.check_range("beta", beta, low=0, low_open=True)
    checks.check_range("desirable_weight", desirable_weight, low=0)
    checks.check_range("undesirable_weight", undesirable_weight, low=0)
    mask, (p, r) = _pair_inputs(reduction, weights, where, policy_logps=policy_logps,
                                reference_logps=reference_logps)
    desirable, policy_kl_logps, reference_kl_logps = checks.array_likes(
        desirable, policy_kl_logps, reference_kl_logps)
    checks.check_shape("desirable", desirable, jnp.shape(p), "policy_logps")
    desirable = jnp.asarray(desirable)
    if desirable.dtype != jnp.bool_:
        checks.check_integer(desirable=desirable)
        checks.check_values(desirable, lambda d, xp: (d != 0) & (d != 1),
                            "desirable must be boolean or 0 / 1", mask)
        desirable = desirable == 1
    if (policy_kl_logps is None) != (reference_kl_logps is None):
        raise ValueError("policy_kl_logps and reference_kl_logps must be given together (or neither)")
    z0 = 0.0
    if policy_kl_logps is not None:
        _check_logps(policy_kl_logps=policy_kl_logps, reference_kl_logps=reference_kl_logps)
        z0 = jax.lax.stop_gradient(jnp.maximum(jnp.mean(policy_kl_logps - reference_kl_logps), 0))

    def prospect(p, r):
        # 1 - σ(x) = σ(-x): one sigmoid of a signed margin serves both kinds of example
        # (the sign as a select of the margin: the backward keeps the boolean, not a float array)
        margin = beta * (fill_masked(p - r, mask) - z0)
        loss = jax.nn.sigmoid(jnp.where(desirable, -margin, margin))
        return jnp.where(desirable, desirable_weight * loss, undesirable_weight * loss)

    loss = keep_inputs(prospect, p, r, cast=True)
    return reduce_loss(loss, mask, weights, reduction)


def sequence_log_probs(token_logprobs, mask, *, average=False):
    r"""Log-probability of each sequence: the sum (or mean) of its unmasked tokens' log-probabilities.

    .. math::
       \log \pi(y) = \sum_t m_t \log \pi(y_t \mid y_{<t}), \qquad
       \text{average: } \frac{\sum_t m_t \log \pi(y_t \mid y_{<t})}{\sum_t m_t}

    The reduction that turns per-token log-probabilities (:func:`jloss.linear_log_probs`,
    or ``log_softmax`` of any model's logits gathered at the labels) into the
    sequence log-probabilities that :func:`dpo`, :func:`cpo` and :func:`kto`
    take (the sum), or the length-normalised ones of :func:`orpo` and
    :func:`simpo` (``average=True``). Masked tokens (padding, the prompt)
    contribute nothing to value or gradient, even where they hold NaN; a
    sequence without an unmasked token gives 0. As TRL's ``concatenated_forward``
    (``(per_token_logps * loss_mask).sum(-1)``, divided by the mask's sum for ORPO
    and SimPO).

    Args:
      token_logprobs: ``(..., T)`` float per-token log-probabilities; the last axis is time.
      mask: ``(..., T)`` boolean (or integer 0 / 1) array, true for the completion's tokens.
      average: divide by the number of unmasked tokens (length normalisation).

    Returns:
      ``(...)`` float log-probability per sequence (float32, or float64 for float64 input).

    Raises:
      ValueError: ``token_logprobs`` and ``mask`` of different shapes, or a scalar.
      TypeError: integer ``token_logprobs``, or a float ``mask``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jloss
      >>> logp = jnp.array([[-1.0, -2.0, -3.0], [-0.5, -0.5, jnp.nan]])
      >>> mask = jnp.array([[True, True, True], [True, True, False]])
      >>> jloss.sequence_log_probs(logp, mask).tolist()
      [-6.0, -1.0]
      >>> jloss.sequence_log_probs(logp, mask, average=True).tolist()
      [-2.0, -0.5]

    References:
      Rafailov, R. et al. (2023). Direct Preference Optimization; TRL ``DPOTrainer``.
    """
    token_logprobs, mask = checks.array_likes(token_logprobs, mask)
    checks.check_float(token_logprobs=token_logprobs)
    checks.check_same_shape(token_logprobs=token_logprobs, mask=mask)
    if jnp.ndim(token_logprobs) < 1:
        raise ValueError("token_logprobs must have a time axis, shape (..., T), got a scalar")
    m = jnp.asarray(mask)
    if jnp.issubdtype(m.dtype, jnp.floating):
        raise TypeError(f"mask must be boolean (or integer 0 / 1), got dtype {m.dtype}")
    m = m != 0
    total = jnp.sum(jnp.where(m, token_logprobs, 0), axis=-1)
    if not average:
        return total
    count = jnp.sum(m, axis=-1)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 0)
