"""Benchmarks of the product: the pipeline stages and MQTT delivery, side by side."""
