"""Layer 3: what comes from outside the package.

`paper` loads the paper profile's training mix and benchmarks (hub datasets, or local files in the same
formats); `hub` resolves the model names every command accepts and fails within seconds when the hub is out
of reach.
"""
