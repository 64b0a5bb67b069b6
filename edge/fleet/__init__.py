"""`mnv1-edge fleet`: every daemon's availability, stats and last result from the broker, one row each."""
