"""phonion.core — what every layer may use: units and constants, structures, the calculator SPEC,
JSON sanitising, autocorrelation, the configuration mechanism. Imports nothing else of phonion."""
