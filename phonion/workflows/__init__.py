"""phonion.workflows — one ``run_<stage>(config) -> Result`` per stage, used by the CLI, compare and the chain.

A Result is a typed object with ``to_dict()`` (the stage's JSON, the command contract) and
``save(directory)`` (the stage's files). Workflows read inputs, call the pure analysis / simulation / mlip
layers below, and never parse command lines or print.
"""
