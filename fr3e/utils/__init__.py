"""Layer 0: shared plumbing that knows nothing of the method.

`errors` (UserError), `io` (atomic writes, JSONL), `logs` (failure excerpts of subprocess logs), `seeds`
(seeds derived from tuples). Imports nothing else of fr3e.
"""
