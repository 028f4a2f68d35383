"""The CPU dress rehearsal of the paper path (`fr3e.cli.rehearsal`).

Unit tests of the fixture builder (tokenizer, chat template, EOS layout, hub-id loading offline) and the quick
rehearsal through the real CLI: FSDP FR3E on 2 gloo ranks with a zero-reward rank, SIGKILL mid-run and resume,
final evaluation on two benchmarks. The quick rehearsal is skipped when accelerate cannot start 2 ranks here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fr3e.rehearsal import fixtures, launch
from fr3e.utils import logs

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tokenizer():
    return fixtures.train_tokenizer(fixtures.fixture_texts(), vocab_size=512)


@pytest.fixture(scope="module")
def fixture_model_dir():
    """The cached fixture model (built once per cache key, ~20 s the first time)."""
    return fixtures.build_fixture_model()


# ------------------------------------------------------------------------------------------------ tokenizer
def test_tokenizer_round_trips_newlines_and_unicode(tokenizer):
    text = "Line one\n\nLine two:  $x^2$ \\boxed{13}\n\tπ ≥ 3 — ok\n"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(tokenizer("\n")["input_ids"]) == "\n"


def test_special_tokens_are_single_ids_0_1_2(tokenizer):
    # Trained with the special tokens first, as Qwen2.5 numbers them consecutively (151643, 151644, 151645).
    assert [tokenizer.convert_tokens_to_ids(t) for t in fixtures.SPECIAL_TOKENS] == [0, 1, 2]
    assert tokenizer(fixtures.IM_END, add_special_tokens=False)["input_ids"] == [2]
    assert tokenizer.eos_token == fixtures.ENDOFTEXT and tokenizer.pad_token == fixtures.ENDOFTEXT


def test_chat_template_is_qwen_style(tokenizer):
    text = tokenizer.apply_chat_template([{"role": "user", "content": "2+2?"}], add_generation_prompt=True,
                                         tokenize=False)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n")
    with_system = tokenizer.apply_chat_template([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
                                                tokenize=False)
    assert with_system == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"


def test_chat_prompt_ids_contain_the_turn_markers(tokenizer):
    from fr3e.data.paper import chat_prompt

    ids = chat_prompt(tokenizer, "What is 1+1?")
    assert ids.count(1) == 3  # <|im_start|> for system, user, assistant
    assert ids.count(2) == 2  # <|im_end|> closes system and user; the assistant turn stays open
    assert tokenizer.decode(ids).endswith("<|im_start|>assistant\n")


def test_sft_target_ends_the_turn_with_im_end_not_eos():
    assert fixtures.sft_target("9\\pi") == "The answer is \\boxed{9\\pi}.<|im_end|>"


# ------------------------------------------------------------------------------------------------ model dir
def test_fixture_model_has_qwen25_base_eos_layout(fixture_model_dir):
    config = json.loads((fixture_model_dir / "config.json").read_text())
    generation = json.loads((fixture_model_dir / "generation_config.json").read_text())
    tok_config = json.loads((fixture_model_dir / "tokenizer_config.json").read_text())
    assert config["model_type"] == "qwen2" and config["num_key_value_heads"] == 2
    # Two EOS ids in play: the tokenizer / generation config name <|endoftext|> (0), a chat turn ends with <|im_end|> (2).
    assert config["eos_token_id"] == 0 and generation["eos_token_id"] == 0
    assert tok_config["eos_token"] == fixtures.ENDOFTEXT and tok_config["tokenizer_class"] == "Qwen2Tokenizer"
    assert "<|im_start|>" in tok_config["chat_template"]
    meta = json.loads((fixture_model_dir / "rehearsal.json").read_text())
    acc = meta["warm_start"][-1]["accuracy"]
    assert 0.2 <= acc <= 0.8, f"warm start should leave mixed groups, sampled accuracy {acc}"


def test_install_hub_cache_layout(fixture_model_dir, tmp_path):
    snapshot = fixtures.install_hub_cache(fixture_model_dir, tmp_path / "hf")
    repo = tmp_path / "hf" / "hub" / "models--fr3e-rehearsal--qwen2-tiny"
    commit = (repo / "refs" / "main").read_text()
    assert snapshot == repo / "snapshots" / commit and len(commit) == 40
    assert (snapshot / "config.json").exists() and (snapshot / "tokenizer.json").exists()
    assert fixtures.install_hub_cache(fixture_model_dir, tmp_path / "hf") == snapshot  # same content, same commit


def test_hub_id_loads_offline_like_a_hub_model(fixture_model_dir, tmp_path):
    """AutoTokenizer / AutoModelForCausalLM.from_pretrained("<org>/<name>") with HF_HOME and HF_HUB_OFFLINE=1,
    as fr3e.training.trainer.load_policy loads Qwen/Qwen2.5-7B."""
    fixtures.install_hub_cache(fixture_model_dir, tmp_path / "hf")
    info = fixtures.verify_hub_loading(tmp_path / "hf")
    assert info["resolved"] == fixtures.HUB_ID
    assert info["model_type"] == "qwen2" and info["tokenizer_class"] == "Qwen2Tokenizer"
    assert info["round_trip"] is True
    assert info["eos_token_id"] == 0 and info["im_end_id"] == 2 and info["generation_eos"] == [0]
    assert "<|im_start|>user\nhi<|im_end|>" in info["chat"]


def test_unknown_hub_id_fails_offline(fixture_model_dir, tmp_path):
    fixtures.install_hub_cache(fixture_model_dir, tmp_path / "hf")
    with pytest.raises(fixtures.RehearsalError, match="by hub id"):
        fixtures.verify_hub_loading(tmp_path / "hf", hub_id="fr3e-rehearsal/not-there")


# ------------------------------------------------------------------------------------------------ recipe
def test_size_overrides_touch_sizes_engine_model_and_data_files_only():
    ov = launch.size_overrides(launch.QUICK_SIZES)
    keys = {o.split("=", 1)[0] for o in ov}
    files = {k for k in keys if k.startswith("data.local_files.")}
    assert {k.split(".")[-1] for k in files} == set(launch.data_files())  # the 8 fixture datasets
    assert keys - files == {"model.base", "model.dtype", "rollout.engine", "data.prompts_per_step", "data.max_prompt_tokens",
                    "data.max_response_tokens", "optim.micro_batch_size", "checkpoint_every", "eval_every",
                    "distributed_timeout_s", "data.eval_benchmarks"}
    assert "model.base=fr3e-rehearsal/qwen2-tiny" in ov and "data.eval_benchmarks=[gsm8k,math500]" in ov


def test_recipe_with_overrides_keeps_the_method_settings():
    from fr3e.training.config import load_config

    plain = load_config(launch.recipe("fr3e"))
    _, ov = launch.table1_run("fr3e", launch.QUICK_SIZES, Path("/tmp/x"), launch.size_overrides(launch.QUICK_SIZES))
    config = load_config(launch.recipe("fr3e"), ov)
    assert config.fr3e == plain.fr3e and config.grpo == plain.grpo  # K, M, modulation, ... as in the paper recipe
    assert (config.optim.lr, config.optim.updates_per_batch) == (plain.optim.lr, plain.optim.updates_per_batch)
    assert config.model.base == fixtures.HUB_ID and config.steps == 4 and config.data.eval_n == 2
    assert config.profile == "paper" and config.data.train == "paper/train"


def test_table1_run_names_match_ensure_runs(tmp_path):
    """The rehearsal's Table 1 runs sit where fr3e.study.report.ensure_runs looks, so the notebook reuses them."""
    from fr3e.study import report as results

    sizes = launch.QUICK_SIZES
    overrides = launch.size_overrides(sizes)
    seen = []

    def fake_launcher(config, run_dir, progress, cache_dir):
        seen.append((Path(run_dir), config))
        Path(run_dir).mkdir(parents=True)
        (Path(run_dir) / "DONE").write_text("{}")
        return run_dir

    results.ensure_runs({"fr3e": {fixtures.TABLE1_MODEL: launch.recipe("fr3e")}}, [fixtures.TABLE1_MODEL], [0], steps=sizes.steps,
                        runs_root=tmp_path, overrides=overrides, eval_n=sizes.eval_n,
                        eval_problems=sizes.eval_problems, launcher=fake_launcher)
    run_dir, ov = launch.table1_run("fr3e", sizes, tmp_path, overrides)
    assert seen[0][0] == run_dir
    from fr3e.training.config import load_config

    assert load_config(launch.recipe("fr3e"), ov).to_dict() == seen[0][1].to_dict()


def test_failure_excerpt_keeps_the_first_rank_traceback():
    log = "\n".join([
        "noise", "[rank1]: Traceback (most recent call last):", '[rank1]:   File "x.py", line 1, in f',
        "[rank1]:     f()", "[rank0]: unrelated", "[rank1]: RuntimeError: boom", "W1126 after"])
    assert logs.failure_excerpt(log) == ("[rank1]: Traceback (most recent call last):\n"
                                      '[rank1]:   File "x.py", line 1, in f\n[rank1]:     f()\n'
                                      "[rank1]: RuntimeError: boom")
    assert logs.failure_excerpt("a\nsome Error here\nb") == "some Error here"


# ------------------------------------------------------------------------------------------------ quick run
def _two_ranks_start(tmp_path) -> bool:
    """accelerate launch with the DDP CPU config starts ranks 0 and 1 of a world of 2 (each writes a file)."""
    script = tmp_path / "ranks.py"
    script.write_text("import os, pathlib\n"
                      f"pathlib.Path({str(tmp_path)!r}, 'started', os.environ['RANK']).write_text(os.environ['WORLD_SIZE'])\n")
    (tmp_path / "started").mkdir()
    config = launch.accelerate_config("ddp", tmp_path)
    try:
        subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), str(script)],
                       capture_output=True, timeout=90, env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        return False
    found = {p.name: p.read_text() for p in (tmp_path / "started").iterdir()}
    return found == {"0": "2", "1": "2"}


@pytest.mark.slow
def test_quick_rehearsal(tmp_path):
    """FR3E on the Table 1 recipe under FSDP2 with 2 gloo ranks, rank 1 scoring every rollout 0, killed with
    SIGKILL after step 2 and relaunched: it resumes, finishes, writes DONE and evaluates both benchmarks.
    A failed rehearsal is a skip where accelerate cannot start 2 processes at all (checked only then)."""
    out = tmp_path / "rehearsal"
    proc = subprocess.run([sys.executable, "-m", "fr3e.cli.rehearsal", "--quick", "--dir", str(out), "--timeout", "150"],
                          capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0 and not _two_ranks_start(tmp_path):
        pytest.skip("accelerate launch cannot start 2 processes on this machine")
    record = json.loads((out / "rehearsal.json").read_text())
    steps = {s["name"]: s for s in record["steps"]}
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    run = next(s for name, s in steps.items() if name.startswith("FR3E"))
    checks = run["checks"]
    assert checks["done"] and checks["world_size"] == 2
    assert checks["killed_at_step"] >= 2 and checks["steps"] == [1, 2, 3, 4]
    assert set(checks["final_eval"]) == {"gsm8k", "math500"}
    assert "rehearsal_zero_reward_rank=1" in checks["command"]
    assert any(name.endswith((".safetensors", ".bin")) for name in checks["model_files"])


def test_failure_excerpt_follows_a_chained_exception_to_its_last_error():
    log = "\n".join([
        "Traceback (most recent call last):", '  File "a.py", line 3, in load', "ConnectionError: offline", "",
        "The above exception was the direct cause of the following exception:", "",
        "Traceback (most recent call last):", '  File "b.py", line 9, in main', "DataError: pass --data", "tail"])
    excerpt = logs.failure_excerpt(log)
    assert excerpt.startswith("Traceback") and excerpt.endswith("DataError: pass --data")
    assert "ConnectionError: offline" in excerpt and "tail" not in excerpt
