"""phonion.mlip — calculators (the SPEC resolver), training data, MACE training, evaluation, export."""
