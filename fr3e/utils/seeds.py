"""Seeds derived from tuples, shared by the trainer and the engines.

Every random stream of a run (prompt order, base trajectories, continuations of each state, mini-batch order,
the random scorer, evaluation) gets its own seed derived from the run seed and the coordinates of what it
samples, so that streams never overlap and a resumed run reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

import hashlib


def derive_seed(*parts) -> int:
    """A 62-bit seed from any tuple of ints/strings (stable across processes, machines and Python versions)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2
