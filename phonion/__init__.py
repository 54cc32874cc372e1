"""phonion: AIMD → MACE → long MD → the same analyses on DFT and MLIP trajectories.

One installed import name, ``phonion``. The user's top-level directories ``md/``, ``mdma/`` and ``mlip/``
are installed as ``phonion.md``, ``phonion.mdma`` and ``phonion.mlip`` (pyproject ``package-dir``);
``phonion.core``, ``phonion.workflows``, ``phonion.compare``, ``phonion.chain`` and ``phonion.cli`` live
here. Imports point one way (core → io → analysis → simulation → mlip → workflows → compare → chain →
cli; the contract is in ``.importlinter``). Importing phonion has no side effects.
"""

__version__ = "0.1.0"
