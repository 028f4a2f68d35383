import re
import tomllib
from pathlib import Path

import pytest
import yaml

from fr3e.training.config import (
    ConfigError,
    FR3EConfig,
    GRPOConfig,
    OptimConfig,
    TrainConfig,
    apply_overrides,
    diff_configs,
    field_help,
    load_config,
    save_config,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("cls", [FR3EConfig, GRPOConfig, OptimConfig, TrainConfig])
def test_every_field_has_help(cls):
    for name, text in field_help(cls).items():
        assert len(text) > 10, f"{cls.__name__}.{name} has no help line"


@pytest.mark.parametrize("ctor,match", [
    (lambda: FR3EConfig(num_anchors=0), "K >= 1"),
    (lambda: FR3EConfig(continuations_per_state=1), "M >= 2"),
    (lambda: FR3EConfig(scorer="vibes"), "scorer"),
    (lambda: FR3EConfig(modulation="x"), "modulation"),
    (lambda: FR3EConfig(keep_right=0, keep_wrong=0), "keep at least one"),
    (lambda: GRPOConfig(rollouts_per_prompt=1), "G >= 2"),
    (lambda: OptimConfig(eps_low=1.0), "eps_low"),
    (lambda: OptimConfig(eps_high=-0.1), "eps_high"),
    (lambda: OptimConfig(dual_clip=0.5), "dual_clip"),
    (lambda: OptimConfig(lr=0), "lr"),
    (lambda: TrainConfig(method="ppo"), "method"),
])
def test_impossible_values_rejected(ctor, match):
    with pytest.raises(ConfigError, match=match):
        ctor()


def test_yaml_round_trip_and_unknown_key(tmp_path):
    cfg = apply_overrides(TrainConfig(), ["fr3e.num_anchors=2", "optim.lr=1e-4", "name=x", "grpo.dynamic_sampling=false"])
    assert cfg.fr3e.num_anchors == 2 and cfg.optim.lr == 1e-4 and cfg.grpo.dynamic_sampling is False
    path = tmp_path / "c.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg
    path.write_text(yaml.safe_dump({"fr3e": {"num_anchor": 3}}))
    with pytest.raises(ConfigError, match=r"'fr3e\.num_anchor'.*Did you mean 'num_anchors'.*Valid keys"):
        load_config(path)
    path.write_text(yaml.safe_dump({"optimm": {}}))
    with pytest.raises(ConfigError, match="Did you mean 'optim'"):
        load_config(path)


def test_override_errors():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(TrainConfig(), ["fr3e.num_anchors"])
    with pytest.raises(ConfigError, match="expected a int"):
        apply_overrides(TrainConfig(), ["fr3e.num_anchors=two"])
    with pytest.raises(ConfigError, match="section"):
        apply_overrides(TrainConfig(), ["fr3e=3"])
    with pytest.raises(ConfigError, match="Did you mean 'eps_high'"):
        apply_overrides(TrainConfig(), ["optim.eps_hi=0.3"])


def test_diff_configs_names_fields():
    a = TrainConfig().to_dict()
    b = apply_overrides(TrainConfig(), ["fr3e.num_anchors=2"]).to_dict()
    assert diff_configs(a, b) == ["fr3e.num_anchors: 4 -> 2"]


def test_grpo_pp_forces_no_modulation():
    assert TrainConfig(method="grpo_pp").modulation == "none"
    assert TrainConfig(method="fr3e").modulation == "paper"


def _names(reqs):
    return {re.split(r"[<>=!\[ ;]", r.strip(), maxsplit=1)[0].lower() for r in reqs}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"])
    for extra in ("notebooks", "dev"):
        wanted |= _names(project["optional-dependencies"][extra])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = _names(p for p in pip if not p.startswith("-"))
    assert listed == wanted
    assert any("constraints.txt" in p for p in pip)
    assert "python=3.11" in env["dependencies"]


def test_constraints_pin_cpu_torch():
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().split()


def test_yaml_types_checked(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-4\n  eps_high: 1\nfr3e:\n  num_anchors: 2\n")
    cfg = load_config(path)
    assert cfg.optim.lr == 1e-4 and isinstance(cfg.optim.eps_high, float)
    path.write_text("fr3e:\n  num_anchors: four\n")
    with pytest.raises(ConfigError, match="fr3e.num_anchors='four' should be a int"):
        load_config(path)


def test_mapping_fields_take_dotted_keys_and_yaml_mappings():
    from fr3e.training.config import apply_overrides

    c = apply_overrides(TrainConfig(), ["data.local_files.gsm8k=/data/gsm8k.jsonl",
                                        "data.local_files.aime24=/data/aime.jsonl"])
    assert c.data.local_files == {"gsm8k": "/data/gsm8k.jsonl", "aime24": "/data/aime.jsonl"}
    c = apply_overrides(TrainConfig(), ["data.local_files={math500: /m.jsonl}"])
    assert c.data.local_files == {"math500": "/m.jsonl"}
    with pytest.raises(ConfigError, match="is a section"):
        apply_overrides(TrainConfig(), ["data=1"])
    with pytest.raises(ConfigError, match="is a value"):
        apply_overrides(TrainConfig(), ["data.local_files.gsm8k.x=1"])


def test_recipes_load_by_name_from_any_folder(tmp_path, monkeypatch):
    from fr3e.training.config import recipe_dir, resolve_recipe

    monkeypatch.chdir(tmp_path)  # not the checkout: names resolve against the shipped recipes
    assert resolve_recipe("tiny-fr3e") == recipe_dir() / "tiny-fr3e.yaml"
    assert resolve_recipe("reproduce/configs/tiny-grpo_pp.yaml") == recipe_dir() / "tiny-grpo_pp.yaml"
    assert resolve_recipe("table1/qwen2.5-7b-fr3e") == recipe_dir() / "table1" / "qwen2.5-7b-fr3e.yaml"
    assert load_config("tiny-grpo_pp").method == "grpo_pp"
    own = tmp_path / "tiny-fr3e.yaml"  # a file of that name in the working folder wins over the shipped one
    own.write_text("method: grpo_pp\nprofile: tiny\n")
    assert resolve_recipe("tiny-fr3e.yaml") == Path("tiny-fr3e.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("no-such-recipe")


def test_a_run_saved_before_a_field_existed_still_matches_its_default():
    """Runs recorded before optim.micro_batch_tokens and rollout.kv_cache_gb (and the other late fields) behaved
    as their defaults, so a finished run is reused, while a real difference is still refused."""
    from fr3e.training.config import ABSENT_MEANS_DEFAULT, _default, diff_configs

    config = load_config(ROOT / "reproduce/configs/tiny-paths-fr3e.yaml")
    saved = config.to_dict()
    dropped = []
    for name in ABSENT_MEANS_DEFAULT:  # a field at its default is what an older run's config.json lacks
        section, _, key = name.rpartition(".")
        holder = saved[section] if section else saved
        if holder.get(key) == _default(name):
            holder.pop(key)
            dropped.append(name)
    assert {"optim.micro_batch_tokens", "rollout.kv_cache_gb"} <= set(dropped)
    assert diff_configs(saved, config.to_dict()) == []
    other = load_config(ROOT / "reproduce/configs/tiny-paths-fr3e.yaml", ["optim.micro_batch_tokens=512"])
    assert diff_configs(saved, other.to_dict()) == ["optim.micro_batch_tokens: None -> 512"]
