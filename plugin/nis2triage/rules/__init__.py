"""Detection rules evaluated against the indexed events: Sigma rules, and native rule types."""
