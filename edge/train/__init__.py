"""Teach the model the operator's own classes: folder-per-class images → gated int8 model with a report."""
