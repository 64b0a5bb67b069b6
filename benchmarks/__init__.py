"""Measurements that produce documented figures (docs/); not shipped: the wheel packages only edge*."""
