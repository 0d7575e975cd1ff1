"""nis2triage: online anomaly detection, triage and NIS2 reporting beside Elasticsearch."""

__version__ = "0.1.0"
