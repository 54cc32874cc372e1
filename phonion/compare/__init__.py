"""phonion.compare — reference (DFT / surrogate) vs MLIP: the same analyses on both sides, the limits,
the report. ``run_compare(CompareConfig)`` is the entry point (:mod:`phonion.compare.run`)."""

from phonion.compare.run import CompareConfig, run_compare  # noqa: F401
