"""The ``jloss`` command line: ``jloss demo [--quick] [--out DIR] [--seed N] [--no-progress]``."""

import argparse
import os
import sys

DEMO_HELP = """\
Measure the claims of the learning material on real data.

Trains small MLPs (pure JAX on jloss.TrainState / optimizer / make_train_step)
on data sets bundled with scikit-learn, so nothing is downloaded: digits
(10 classes), breast cancer (binary) and diabetes (regression). It prints the
loss-selection guide (jloss.recommend), then for each claim a table of the
measured numbers and whether the claim holds on the data:

  (a) outliers     10%% corrupted regression targets: MAE and Huber beat MSE
  (b) ce-vs-mse    cross-entropy reaches 90%% accuracy in fewer steps than MSE on softmax
  (c) gradients    confidently wrong, BCE + sigmoid has a far larger gradient than MSE + sigmoid
  (d) imbalance    ~5%% positives: focal loss or weighted BCE raise minority recall
  (e) optimizers   too high a learning rate diverges, too low crawls; SGD / momentum / Adam / RMSprop
  (f) calibration  label smoothing lowers the expected calibration error
  lr-finder        jloss.lr_finder: LR range test on the digits MLP
  landscape        jloss.loss_landscape: 1-D and 2-D filter-normalised loss landscapes

A claim that does not hold on the data is reported as not holding. PNG plots
go to --out. The full run takes 1-3 minutes on 2 CPU cores; --quick is the
small version used by the tests. For these tiny models compiling dominates,
so unless XLA_FLAGS already sets it, the demo compiles with
--xla_backend_optimization_level=0 (set XLA_FLAGS to override).
"""


def _parser():
    parser = argparse.ArgumentParser(prog="jloss", description="jloss command line tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    demo = sub.add_parser("demo", help="train small models on real data and measure the claims",
                          description=DEMO_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--quick", action="store_true", help="smaller, faster version (used by the tests)")
    demo.add_argument("--out", default="jloss-demo", metavar="DIR",
                      help="folder for the PNG plots (default: ./jloss-demo)")
    demo.add_argument("--seed", type=int, default=0, metavar="N",
                      help="base random seed; repeat r uses N + r (default: 0)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument("--only", metavar="NAMES", default=None,
                      help="comma-separated experiments to run, e.g. 'optimizers' or 'outliers,gradients' "
                           "(default: all; names as listed above)")
    demo.add_argument("--json", metavar="FILE", default=None,
                      help="also write the measured numbers and verdicts to FILE as JSON")
    return parser


def _fast_compile():
    """Tiny models: compile time dominates, so ask XLA for a quick compile unless told otherwise.

    XLA reads the flag when JAX starts its backend; in a process where JAX already runs
    (a notebook, a test) it changes nothing, and then it is not set at all.
    """
    try:
        from jax._src import xla_bridge  # private; absent in some JAX versions

        if xla_bridge.backends_are_initialized():
            return
    except (ImportError, AttributeError):
        pass
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_backend_optimization_level=0").strip()


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from jloss import demo  # importing starts no JAX backend, so XLA_FLAGS can still change

        only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
        unknown = [n for n in only or () if n not in demo.CLAIMS]
        if unknown:
            parser.error(f"unknown experiment(s) for --only: {', '.join(unknown)}; "
                         f"choose from {', '.join(demo.CLAIMS)}")
        _fast_compile()
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        demo.run(quick=args.quick, seed=args.seed, out=args.out, progress=not args.no_progress,
                 only=only, json_path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
