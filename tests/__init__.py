"""Tests of mnv1-edge (a package so test support imports as tests.support, no sys.path edits)."""
