"""The entropy bonus (fixed or adaptive coefficient) and top-entropy-token updates, options of the shared update:
the threshold against TRL's quantile rule, the adaptive schedule by hand, the bonus's gradient, and one short
GRPO++ run on the path world that logs and checkpoints them."""

import json
import math
from pathlib import Path

import pytest
import torch

from fr3e.method.entropy import token_entropy, top_share_threshold
from fr3e.training.config import ConfigError, OptimConfig, load_config
from fr3e.training.entropy_control import EntropyControl
from fr3e.training.policy import token_logprobs

ROOT = Path(__file__).resolve().parents[1]


def test_top_share_threshold_by_hand_and_against_trls_quantile_rule():
    x = torch.tensor([0.1, 0.5, 0.3, 0.9, 0.7])
    assert top_share_threshold(x, 0.4) == pytest.approx(0.7)  # the 2 highest pass
    assert (torch.tensor([1.0, 1.0, 1.0, 0.0]) >= top_share_threshold(torch.tensor([1.0, 1.0, 1.0, 0.0]), 0.25)).sum() == 3
    assert top_share_threshold(x, 1.0) == pytest.approx(0.1) and top_share_threshold(torch.zeros(0), 0.2) == math.inf
    assert (torch.arange(15.0) >= top_share_threshold(torch.arange(15.0), 0.2)).sum() == 3  # 0.2 · 15 is 3, not 4
    # TRL keeps x >= torch.quantile(x, 1 - rho): the same tokens for distinct values at the recommended rho
    for n in range(1, 120):
        v = torch.randperm(n).float()
        assert torch.equal(v >= torch.quantile(v, 0.8), v >= top_share_threshold(v, 0.2)), n
    with pytest.raises(ValueError, match="share=0"):
        top_share_threshold(x, 0)


def test_adaptive_coefficient_by_hand_and_its_state_round_trip():
    cfg = OptimConfig(adaptive_entropy=True, entropy_target=0.5, entropy_coef_delta=0.1, entropy_coef_max=0.25)
    control = EntropyControl(cfg)
    assert control.bonus and control.applied_coef() == 0.0  # no entropy measured yet: the bonus waits
    seen = []
    for h in (0.4, 0.3, 0.2, 0.9, 0.45):
        control.after_step(h)
        seen.append((round(control.coef, 6), control.applied_coef()))
    # up at or below the target, capped at the max; down above it, and no bonus while the last H̄ is above
    assert seen == [(0.1, 0.1), (0.2, 0.2), (0.25, 0.25), (0.15, 0.0), (0.25, 0.25)]
    again = EntropyControl(cfg)
    again.load(json.loads(json.dumps(control.state())))
    assert (again.coef, again.last_entropy) == (control.coef, control.last_entropy)
    fixed = EntropyControl(OptimConfig(entropy_coef=0.01))
    fixed.after_step(5.0)
    assert fixed.applied_coef() == 0.01 and not EntropyControl(OptimConfig()).bonus


def test_keep_masks_take_one_threshold_over_every_process():
    control = EntropyControl(OptimConfig(top_entropy_quantile=0.25))
    mine = [torch.tensor([0.1, 2.0]), torch.tensor([0.5])]
    other = [3.0, 0.0, 0.2, 0.3, 0.4]  # another process's tokens: 8 in all, the top 2 pass (>= 2.0)
    keep, share = control.keep_masks(mine, lambda xs: xs + other)
    assert [k.tolist() for k in keep] == [[False, True], [False]] and share == 0.25
    assert EntropyControl(OptimConfig()).keep_masks(mine, lambda xs: xs) == (None, 1.0)


def test_the_bonus_entropy_has_the_gradient_of_the_entropy():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(7, 7)

    class Model(torch.nn.Module):
        def forward(self, input_ids, attention_mask, use_cache=None):
            return type("Out", (), {"logits": emb(input_ids)})()

    ids, mask = torch.tensor([[1, 2, 3, 4]]), torch.ones(1, 4, dtype=torch.bool)
    _, ent = token_logprobs(Model(), ids, mask, entropy_grad=True, chunk=2)
    ent.sum().backward()
    got = emb.weight.grad.clone()
    emb.weight.grad = None
    token_entropy(emb(ids)[:, :-1]).sum().backward()
    assert torch.allclose(got, emb.weight.grad, atol=1e-6)
    assert torch.allclose(ent.detach(), token_entropy(emb(ids)[:, :-1]).detach(), atol=1e-6)


def test_config_refuses_what_cannot_run():
    with pytest.raises(ConfigError, match="top_entropy_quantile=0"):
        OptimConfig(top_entropy_quantile=0)
    with pytest.raises(ConfigError, match="needs optim.loss_aggregation=token-mean"):
        OptimConfig(top_entropy_quantile=0.2, loss_aggregation="seq-mean")
    with pytest.raises(ConfigError, match="entropy_coef=-0.1"):
        OptimConfig(entropy_coef=-0.1)


@pytest.mark.slow
def test_a_grpo_pp_run_with_both_fixes_logs_and_checkpoints_them(tmp_path):
    from fr3e.training.trainer import train
    from fr3e.utils.io import read_jsonl

    config = load_config(ROOT / "reproduce/configs/tiny-paths-grpo_pp.yaml", [
        "steps=2", "checkpoint_every=1", "eval_every=0", "data.prompts_per_step=4", "data.eval_problems=4",
        "data.eval_n=2", "grpo.max_refill_rounds=1", "probe_every=0", "optim.top_entropy_quantile=0.2",
        "optim.adaptive_entropy=true", "optim.entropy_target=5.0", "optim.entropy_coef_delta=0.05"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = train(config, tmp_path / "run", progress=False, cache_dir=ROOT / "runs" / "cache")
    finally:
        torch.set_num_threads(threads)
    rows = read_jsonl(run / "metrics.jsonl")
    # two optimizer steps per batch: coefficients 0 (nothing measured yet) and 0.05 at step 1, 0.10 and 0.15 at step 2
    assert [round(r["entropy_coef"], 6) for r in rows] == [0.05, 0.15]
    assert all(0.2 <= r["entropy_kept_share"] < 0.3 and r["bonus_entropy"] > r["entropy"] for r in rows)
    states = sorted((run / "checkpoints").glob("*/trainer_state.json"))
    assert [round(json.loads(p.read_text())["entropy_control"]["coef"], 6) for p in states] == [0.1, 0.2]


def test_a_run_saved_before_the_options_existed_matches_their_defaults():
    from fr3e.training.config import diff_configs

    config = load_config(ROOT / "reproduce/configs/tiny-paths-grpo_pp.yaml")
    saved = config.to_dict()
    for key in ("entropy_coef", "adaptive_entropy", "entropy_target", "entropy_coef_delta", "entropy_coef_min",
                "entropy_coef_max", "top_entropy_quantile"):
        del saved["optim"][key]
    assert diff_configs(saved, config.to_dict()) == []
    on = load_config(ROOT / "reproduce/configs/tiny-paths-grpo_pp.yaml", ["optim.top_entropy_quantile=0.2"])
    assert diff_configs(saved, on.to_dict()) == ["optim.top_entropy_quantile: None -> 0.2"]
