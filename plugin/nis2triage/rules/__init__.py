"""Detection rules: native YAML rule types and Sigma, evaluated against Elasticsearch."""
