"""The native rule types, one module per family, each with an `evaluate` function."""
