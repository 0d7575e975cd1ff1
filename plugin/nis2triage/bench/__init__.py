"""Benchmarks that print figures: the NAB scorer and the detectors measured with it."""
