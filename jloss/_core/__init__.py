"""The convention every loss shares: masks, weights, reductions, dtype policy, class-axis layout, checks."""
