"""Two processes under FSDP2 (gloo, CPU) with deliberately uneven data: nothing hangs, every rank agrees.

tests/distributed_checks.py runs the checks inside `accelerate launch`; every collective there times out
after 15 s, so each defect of the multi-process path shows up as a failed check, not a stuck test. One
launch serves all the tests of this module (about 30 s on 2 idle cores).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fr3e.method.sampling import global_quota

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "cache"

FSDP_CPU = """\
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
fsdp_config:
  fsdp_version: 2
  fsdp_reshard_after_forward: true
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_transformer_layer_cls_to_wrap: Qwen3DecoderLayer
  fsdp_state_dict_type: FULL_STATE_DICT
  fsdp_cpu_ram_efficient_loading: false
  fsdp_offload_params: false
mixed_precision: 'no'
num_machines: 1
num_processes: 2
machine_rank: 0
use_cpu: false
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """{rank: results} of tests/distributed_checks.py on 2 FSDP2 processes."""
    from fr3e.tasks.warm_start import warm_start

    warm_start("general", cache_dir=CACHE, progress=False)  # built once here, not raced by two processes
    out = tmp_path_factory.mktemp("fsdp")
    config = out / "fsdp-cpu.yaml"
    config.write_text(FSDP_CPU)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
           "--main_process_port", str(free_port()), str(ROOT / "tests" / "distributed_checks.py"), str(out),
           str(CACHE)]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    return {**{r: json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)}, "out": out}


def _ok(ranks, name):
    for r in (0, 1):
        assert ranks[r][name]["ok"], f"rank {r}: {ranks[r][name].get('error')}\n{ranks[r][name].get('trace')}"
    return ranks[0][name]["value"], ranks[1][name]["value"]


@pytest.mark.slow
def test_runs_as_fsdp2_with_sharded_parameters(ranks):
    assert ranks[0]["world"] == 2 and ranks[0]["sharded"] and "FSDP" in ranks[0]["distributed_type"]


@pytest.mark.slow
def test_uneven_forward_counts_do_not_hang(ranks):
    assert _ok(ranks, "forward_uneven") == (3, 0)


@pytest.mark.slow
def test_uneven_update_reports_global_statistics(ranks):
    a, b = _ok(ranks, "update_uneven")
    assert a["tokens"] == b["tokens"] == 3 + 4 + 5  # rank 0's three continuations, counted on both ranks
    assert a["entropy"] == pytest.approx(b["entropy"]) and a["entropy"] > 0  # rank 1 sees rank 0's entropy


@pytest.mark.slow
def test_scheduler_steps_once_per_update(ranks):
    a, b = _ok(ranks, "update_uneven")
    # LambdaLR with 4 warm-up steps after one step: lr · 2/4. Stepping once per process gave lr · 3/4.
    assert a["lr"] == b["lr"] == pytest.approx(1e-3 * 2 / 4)


@pytest.mark.slow
def test_evaluation_is_sharded_and_identical_on_every_rank(ranks):
    a, b = _ok(ranks, "evaluate")
    assert a == b
    assert {row["benchmark"] for row in a} == {"easy", "medium"}
    assert all(row["num_problems"] == 3 for row in a)


@pytest.mark.slow
def test_final_model_is_saved_from_sharded_weights(ranks):
    a, b = _ok(ranks, "save_model")
    assert "model.safetensors" in a and "config.json" in a and "tokenizer.json" in a
    from safetensors.torch import load_file
    from transformers import AutoConfig

    weights = load_file(str(ranks["out"] / "run" / "model" / "model.safetensors"))
    config = AutoConfig.from_pretrained(ranks["out"] / "run" / "model")
    assert weights["model.embed_tokens.weight"].shape == (config.vocab_size, config.hidden_size)  # not a shard


@pytest.mark.slow
def test_a_step_with_a_rank_without_signal_completes(ranks):
    a, b = _ok(ranks, "step_zero_reward_rank")
    assert a == b  # the metrics row is global


@pytest.mark.slow
def test_non_finite_loss_on_one_rank_stops_every_rank(ranks):
    a, b = _ok(ranks, "nan_loss_one_rank")
    assert a.startswith("TrainingError") and "on this process" in a
    assert b.startswith("TrainingError") and "1 of 2 processes" in b
    assert ranks[1]["nan_loss_one_rank"]["seconds"] < 10  # agreed at once, not after a timeout


def test_global_quota_hand_computed():
    # 3 processes, 2 rounds, target 5: round 0 gives (1, 0, 2) = 3 prompts, round 1 (2, 2, 0): the first
    # 2 of round 1 in process order are process 0's two.
    assert global_quota([[1, 0, 2], [2, 2, 0]], 5) == [[1, 0, 2], [2, 0, 0]]
    assert global_quota([[1, 1]], 5) == [[1, 1]]  # fewer than the target: everything trains
    assert global_quota([[3, 3]], 0) == [[0, 0]]


def test_global_quota_fills_the_batch_when_signal_is_uneven():
    """8 processes, 30% of prompts carry signal: the global target holds whenever enough signal exists.

    A per-process trim (each keeps ceil(target / 8) = 4) under-fills most steps; the global quota never does.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    target, world, per_rank, short_local, short_global = 32, 8, 4, 0, 0
    for _ in range(500):
        counts = [rng.binomial(per_rank, 0.3, size=world).tolist()]
        while sum(map(sum, counts)) < target and len(counts) < 4:
            counts.append(rng.binomial(per_rank, 0.3, size=world).tolist())
        have = sum(map(sum, counts))
        local = sum(min(sum(c[w] for c in counts), per_rank) for w in range(world))
        quota = global_quota(counts, target)
        short_local += local < min(target, have)
        short_global += sum(map(sum, quota)) != min(target, have)
    assert short_global == 0 and short_local > 250
