"""Model cards: the Hugging Face header (read back with huggingface_hub), the method, the configuration, the
evaluation table with its intervals, the git sha; written atomically, and by every finished run."""

from pathlib import Path

import yaml
from huggingface_hub import ModelCard

from fr3e.training.config import TrainConfig, load_config
from fr3e.training.modelcard import eval_table, is_hub_id, model_card, write_model_card
from fr3e.utils.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "cache"

EVALS = [  # two benchmarks at step 50, n = 4 (hand-made eval.jsonl rows)
    {"step": 50, "benchmark": "aime24", "n": 4, "avg": 0.125, "avg_ci": [0.05, 0.2], "pass": {"1": 0.125, "2": 0.2,
     "4": 0.3}, "greedy": 0.1, "num_problems": 30},
    {"step": 50, "benchmark": "math500", "n": 4, "avg": 0.6, "avg_ci": [0.55, 0.65], "pass": {"1": 0.6, "4": 0.8},
     "greedy": None, "num_problems": 500},
]


def _header(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_card_of_a_hub_model(tmp_path):
    config = TrainConfig(name="qwen-fr3e", profile="paper", steps=50)
    config.model.base = "Qwen/Qwen2.5-7B"
    path = write_model_card(tmp_path, config, EVALS, git_sha="abc1234")
    card = ModelCard.load(path)  # the hub's own parser of README.md
    assert card.data.base_model == "Qwen/Qwen2.5-7B" and card.data.library_name == "transformers"
    assert card.data.tags == ["fr3e", "reinforcement-learning", "math-reasoning", "paper-profile"]
    text = path.read_text()
    assert "**FR3E**" in text and "arXiv [2507.07017]" in text and "git `abc1234`" in text
    assert "| continuations per state (M) | `16` |" in text and "| clip ε low / high | `0.2 / 0.3` |" in text
    # 100 · 0.125 = 12.5 with [5.0, 20.0]; pass@1 12.5, pass@4 30.0; greedy 10.0 (missing -> "–")
    assert "| aime24 | 30 | 12.5 [5.0, 20.0] | 12.5 | 30.0 | 10.0 |" in text
    assert "| math500 | 500 | 60.0 [55.0, 65.0] | 60.0 | 80.0 | – |" in text
    assert "## Evaluation (after step 50)" in text
    assert yaml.safe_load(text.split("```yaml\n")[1].split("```")[0]) == config.to_dict()  # the full config


def test_card_of_a_tiny_grpo_pp_model_names_no_hub_base():
    config = TrainConfig(name="tiny-grpo", method="grpo_pp")
    text = model_card(config, [], git_sha=None)
    header = _header(text)
    assert "base_model" not in header  # 'general' is no hub id: the hub would reject it
    assert header["tags"][:2] == ["fr3e", "grpo-pp"]
    assert "**GRPO++**" in text and "`general` (the tiny profile's warm-started model)" in text
    assert "anchors per trajectory" not in text  # FR3E-only settings left out
    assert "No final evaluation was recorded" in text and "git `unknown" in text


def test_hub_ids_and_paths(tmp_path):
    assert is_hub_id("Qwen/Qwen2.5-Math-7B") and not is_hub_id("general")
    assert not is_hub_id("/abs/model") and not is_hub_id("./model") and not is_hub_id(str(tmp_path))


def test_written_atomically_and_replaced(tmp_path):
    (tmp_path / "README.md").write_text("old")
    write_model_card(tmp_path, TrainConfig(), EVALS, git_sha="x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]  # no temporary file left
    assert (tmp_path / "README.md").read_text().startswith("---\n")
    assert eval_table(EVALS).count("\n") == 4


def test_every_finished_run_has_a_card_with_its_final_evaluation(tmp_path):
    from fr3e.training.trainer import train

    config = load_config(ROOT / "reproduce/configs/tiny-fr3e.yaml", [
        "steps=1", "sample_every=0", "data.prompts_per_step=2", "data.eval_problems=4", "data.eval_n=2",
        "data.max_response_tokens=24", "grpo.max_refill_rounds=0", "name=card"])
    run = Path(train(config, tmp_path / "run", progress=False, cache_dir=CACHE))
    card = ModelCard.load(run / "model" / "README.md")
    assert card.data.library_name == "transformers" and "fr3e" in card.data.tags
    assert card.text.count("\n| easy |") == 1
    assert card.text.strip().endswith("```")
    expected = eval_table(read_jsonl(run / "eval.jsonl"))
    assert expected in card.text
    assert (run / "model" / "model.safetensors").exists()
