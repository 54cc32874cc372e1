"""The ``mlip`` stages of the ``phonion`` command: ``reference``, ``train``, ``evaluate``.

``add_mlip_parsers(sub, formatter)`` adds them to the subparsers of ``phonion.cli``; each handler
takes the parsed arguments and returns an exit code; bad input raises ``ValueError`` (or
``TrajectoryError`` / ``CalculatorSpecError``, both ValueErrors) whose message names the file.

=============  ============================================================================
stage          what it does
=============  ============================================================================
reference      surrogate-reference MD per temperature → ``DIR/<T>K/traj.h5`` (``mlip.reference``)
train          train / fine-tune MACE with Lightning → ``DIR/model.model`` (``mlip.train``)
evaluate       errors of a model on trajectories (``mlip.evaluate``)
=============  ============================================================================
"""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")  # never ask for a wandb key unless the user opts in


def add_mlip_parsers(sub, formatter) -> None:
    """Add the ``reference``, ``train`` and ``evaluate`` subcommands to ``sub``."""
    from mlip.evaluate import add_evaluate_parser
    from mlip.reference import add_reference_parser
    from mlip.train import add_train_parser

    add_reference_parser(sub, formatter)
    add_train_parser(sub, formatter)
    add_evaluate_parser(sub, formatter)


def main(argv=None) -> int:
    """Stand-alone entry (``python -m mlip.mlip_cli train ...``) with the same subcommands."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m mlip.mlip_cli",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_mlip_parsers(parser.add_subparsers(dest="command", metavar="STAGE"),
                     argparse.ArgumentDefaultsHelpFormatter)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:
        print(f"phonion {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
