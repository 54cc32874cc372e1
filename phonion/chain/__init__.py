"""phonion.chain — the whole chain (sites → reference → learn → MLIP MD → compare), its profiles, the demo
and the LiM(SeO3)2 series. ``run_chain(ChainConfig)`` is the entry point (:mod:`phonion.chain.chain`)."""

from phonion.chain.chain import ChainConfig, run_chain  # noqa: F401
