"""phonion: AIMD → MACE → long MD → the same analyses on DFT and MLIP trajectories.

The science lives in the top-level packages ``md``, ``mdma`` and ``mlip``; this package holds
the ``phonion`` command and the bundled data.
"""

__version__ = "0.1.0"
