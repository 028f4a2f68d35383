"""The GPU smoke path runs end to end on CPU with the HF engine (the vLLM branch needs a GPU)."""

import json

import pytest

from fr3e.cli.smoke import build_random_qwen2, gpu_smoke


def test_random_qwen2_loads_with_tokenizer(tmp_path):
    from transformers import AutoModelForCausalLM

    from fr3e.tasks.tokenizer import load_tokenizer

    path = build_random_qwen2(tmp_path / "m", hidden_size=64, num_layers=1)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert json.loads((path / "config.json").read_text())["model_type"] == "qwen2"
    tok = load_tokenizer(path)
    assert tok.decode(tok("1\n2").input_ids, skip_special_tokens=True) == "1\n2"
    assert model.config.vocab_size == len(tok)


@pytest.mark.slow
def test_smoke_pipeline_on_cpu(tmp_path):
    # The GPU sizes shrunk for the CPU (a random model runs nearly every response to the token limit): the same
    # plumbing (generation, update, engine sync, probe, the step-2 checkpoint, final evaluation, model), less work.
    small = ["data.prompts_per_step=4", "data.max_response_tokens=32", "data.eval_problems=4", "data.eval_n=2",
             "probe_prompts=4", "probe_n=2"]
    summary = gpu_smoke(tmp_path, steps=2, engine="hf", overrides=small)
    assert summary["steps"] == 2 and summary["generated_tokens"] > 0
    assert (tmp_path / "run-hf" / "DONE").exists()
    assert summary["engine"] == "hf"
