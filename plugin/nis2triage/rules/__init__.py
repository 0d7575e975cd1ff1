"""Detection rules evaluated against the indexed events: native YAML rule types and Sigma."""
