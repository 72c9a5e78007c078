"""Benchmarks that drive a whole running demo: faults on purpose (chaos) and a soak."""
