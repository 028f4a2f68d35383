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
    engines = ("ours", "generate", "generate_static", "eager")
    assert bench_gpu.main(["--tiny", "--engines", ",".join(engines), "--repeats", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and [s["layout"] for s in report["shapes"]] == ["tiny"]
    workloads = report["shapes"][0]["workloads"]
    for kind in ("fixed", "fr3e"):
        w = workloads[kind]
        assert w["eager_step"]["tokens_per_s"] > 0
        for name in engines:
            cold, warm = w["runs"][f"{name}_cold"], w["runs"][f"{name}_warm"]
            assert cold["tokens"] > 0 and warm["tokens_per_s"] > 0 and warm["repeats"] == 2
            assert warm["tokens_per_s_min"] <= warm["tokens_per_s"] <= warm["tokens_per_s_max"]
            assert len(warm["seconds_all"]) == 2 and warm["prefill_s"] > 0
            assert warm["ratio_to_generate"] > 0 and warm["ratio_to_generate_static"] > 0
    fixed, fr3e = workloads["fixed"], workloads["fr3e"]
    assert fixed["runs"]["generate_warm"]["ratio_to_generate"] == 1.0
    assert fixed["runs"]["generate_static_warm"]["ratio_to_generate_static"] == 1.0
    # EOS at geometric lengths (mean 6 of at most 16 new tokens), the same bias for every engine.
    for r in fr3e["runs"].values():
        assert r["mean_length"] < 0.75 * fr3e["max_new_tokens"]
    assert fr3e["runs"]["ours_warm"]["prefix_shared_tokens"] > 0  # nested states read their trajectory's cache
    table = capsys.readouterr().out
    assert "generate_static" in table and "prefill ms" in table and "x static" in table


def test_the_median_run_and_the_decode_rate():
    runs = [{"tokens_per_s": v, "seconds": 100 / v, "tokens": 100} for v in (50.0, 10.0, 20.0)]
    r = bench_gpu.summarise(runs, prefill_s=1.0, rows=10)
    assert r["tokens_per_s"] == 20.0 and (r["tokens_per_s_min"], r["tokens_per_s_max"]) == (10.0, 50.0)
    assert r["decode_tokens_per_s"] == (100 - 10) / (5.0 - 1.0)  # the median run's 5 s minus the prefill


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
