"""Micro-batches capped by padded tokens (`optim.micro_batch_tokens`), not by rows alone."""

import json
import math
from pathlib import Path

import pytest

from fr3e.training.config import ConfigError, load_config
from fr3e.training.policy import micro_batches

ROOT = Path(__file__).resolve().parents[1]


def test_chunks_keep_order_and_respect_both_caps():
    lengths = [10, 30, 5, 5, 50, 8, 8, 8, 8, 100, 3]
    chunks = micro_batches(lengths, max_rows=3, max_tokens=60)
    assert [i for c in chunks for i in c] == list(range(len(lengths)))  # every row once, in order
    for c in chunks:
        assert len(c) <= 3
        assert len(c) == 1 or len(c) * max(lengths[i] for i in c) <= 60  # a too-long row stands alone
    assert [9] in chunks  # 100 tokens > the cap: a micro-batch of its own
    assert chunks == [[0, 1], [2, 3], [4], [5, 6, 7], [8], [9], [10]]


def test_without_a_token_cap_the_chunks_are_the_row_count_ones():
    lengths = [7] * 10
    assert micro_batches(lengths, max_rows=4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert micro_batches([], max_rows=4, max_tokens=10) == []
    with pytest.raises(ValueError, match="max_rows >= 1"):
        micro_batches(lengths, max_rows=0)


def test_config_refuses_a_negative_cap():
    with pytest.raises(ConfigError, match="micro_batch_tokens must be >= 0"):
        load_config(ROOT / "reproduce/configs/tiny-fr3e.yaml", ["optim.micro_batch_tokens=-1"])


@pytest.mark.slow
def test_a_token_cap_changes_memory_not_the_update(tmp_path):
    """One FR3E step with a tight token cap (many small micro-batches) and without: the loss is normalised over
    the whole batch, so metrics agree to float rounding."""
    from test_trainer import CACHE, SMALL, one_thread

    from fr3e.training.trainer import train
    from fr3e.utils.io import read_jsonl

    extra = [s for s in SMALL if not s.startswith(("steps=", "checkpoint_every", "probe_every"))]
    rows = {}
    for cap in (0, 120):
        cfg = load_config(ROOT / "reproduce/configs/tiny-fr3e.yaml",
                          extra + ["steps=1", "checkpoint_every=1", "probe_every=0", "eval_every=0",
                                   f"optim.micro_batch_tokens={cap}"])
        run = one_thread(train, cfg, tmp_path / f"cap{cap}", progress=False, cache_dir=CACHE)
        rows[cap] = read_jsonl(run / "metrics.jsonl")[0]
    for key in ("loss", "entropy", "clip_low", "clip_high", "tokens", "reward_mean", "grad_norm"):
        a, b = rows[0].get(key), rows[120].get(key)
        assert (a is None) == (b is None), key
        if a is not None:
            assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6), (key, a, b)
    assert json.dumps(rows[0]["value_by_state"]) == json.dumps(rows[120]["value_by_state"])
