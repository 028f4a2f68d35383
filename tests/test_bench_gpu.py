"""reproduce/bench_gpu.py (`make bench-gpu`) on its tiny CPU shape: every engine runs, the JSON has the table's
numbers, the FR3E-shaped workload stops at EOS and shares its nested prefixes."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reproduce"))
import bench_gpu  # noqa: E402

pytestmark = pytest.mark.usefixtures("cpu_threads")


def test_tiny_shape_on_the_cpu_writes_the_comparison(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench_gpu.main(["--tiny", "--engines", "ours,generate,eager", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and [s["layout"] for s in report["shapes"]] == ["tiny"]
    workloads = report["shapes"][0]["workloads"]
    for kind in ("fixed", "fr3e"):
        w = workloads[kind]
        assert w["eager_floor"]["tokens_per_s"] > 0
        for name in ("ours", "generate", "eager"):
            for phase in ("cold", "warm"):
                r = w["runs"][f"{name}_{phase}"]
                assert r["tokens"] > 0 and r["tokens_per_s"] > 0 and r["ratio_to_generate"] > 0
    fixed, fr3e = workloads["fixed"], workloads["fr3e"]
    assert fixed["runs"]["generate_warm"]["ratio_to_generate"] == 1.0
    # EOS at geometric lengths (mean 6 of at most 16 new tokens), the same bias for every engine.
    for r in fr3e["runs"].values():
        assert r["mean_length"] < 0.75 * fr3e["max_new_tokens"]
    assert fr3e["runs"]["ours_warm"]["prefix_shared_tokens"] > 0  # nested states read their trajectory's cache
    assert "ours_cold" in capsys.readouterr().out


def test_bad_shape_is_a_one_line_error(tmp_path, capsys):
    assert bench_gpu.main(["--shapes", "3b", "--out", str(tmp_path / "x.json")]) == 2
    assert "use 0.5b and/or 7b" in capsys.readouterr().err


def test_workloads_are_nested_states_and_flops_count_the_head():
    fr3e = bench_gpu.workload("fr3e", bench_gpu.TINY_SIZES, vocab=512, seed=0)
    s = bench_gpu.TINY_SIZES["fr3e"]
    assert len(fr3e["prompts"]) == s["trajectories"] * s["states"] and fr3e["n"] == s["m"]
    first = fr3e["prompts"][: s["states"]]
    assert all(first[-1][: len(p)] == p for p in first)  # one trajectory's states are prefixes of its longest
    assert all(bench_gpu.EOS not in p for p in fr3e["prompts"])
    from transformers import Qwen2Config

    config = Qwen2Config(**bench_gpu.LAYOUTS["0.5b"])
    # 0.36B non-embedding weights + the 136M-weight head (Qwen2.5-0.5B): 2 FLOPs per weight per token.
    assert 0.95e9 < bench_gpu.matmul_flops_per_token(config, 0) < 1.02e9
