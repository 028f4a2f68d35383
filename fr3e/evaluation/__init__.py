"""Layer 4: evaluation of a model (`evaluate`: avg@n, unbiased pass@k, greedy accuracy, bootstrap intervals)."""
