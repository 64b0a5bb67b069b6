"""Benchmarks behind the documented figures (not shipped): run as `python -m benchmarks.<name>`."""
