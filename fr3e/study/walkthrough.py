"""One FR3E step by hand on one problem (paper §3, Figs. 1-2 made concrete), for the walkthrough notebook.

`walkthrough` samples a base trajectory, computes token entropies, the top-K anchors, the states, M
continuations per state, V(S_j), α and the advantages with the library's own maths, and returns the result
in the shape of a `samples.jsonl` row; `walkthrough_table` lays one trajectory's states out as a table.
Every public name here is also importable from `fr3e.study.report`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from fr3e.study.loaders import first_sample, tiny_model_dir
from fr3e.study.runs import DEFAULT_CACHE, safe_name

logger = logging.getLogger(__name__)


def walkthrough(
    model_dir: str | Path,
    problem_index: int = 0,
    k: int = 4,
    m: int = 16,
    seed: int = 0,
    split: str = "medium",
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    world: str = "arithmetic",
) -> dict:
    """One FR3E step on one problem, by hand, returned as a samples.jsonl row (plus a few extras).

    Samples one base trajectory τ from the model at `model_dir` for problem `problem_index` of `split`,
    computes its token entropies (`fr3e.method.entropy.token_entropy`), the top-k anchors
    (`fr3e.method.anchors.select_anchors`), the states S_0..S_k (`fr3e.method.branching.build_states`), m continuations
    per state, their rewards (prefix ⊕ continuation scored), V(S_j) with Wilson 95% intervals
    (`fr3e.method.values`), α for both variants (`fr3e.method.modulation.modulation_factors`) and A = α_paper · Â
    (`fr3e.method.advantages.group_advantages`). Deterministic in `seed`. world: the tiny world of the problem
    (`fr3e.tasks.worlds`).
    """
    import torch
    from transformers import AutoModelForCausalLM

    from fr3e.engines.hf import HFEngine
    from fr3e.method.advantages import group_advantages
    from fr3e.method.anchors import eligible_positions, select_anchors
    from fr3e.method.branching import build_states
    from fr3e.method.entropy import token_entropy
    from fr3e.method.modulation import modulation_factors
    from fr3e.method.values import state_values, wilson_interval
    from fr3e.tasks.tokenizer import load_tokenizer
    from fr3e.tasks.worlds import get_world, reward

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = load_tokenizer(model_dir)
    problem = get_world(world).make_split(split, problem_index + 1)[problem_index]
    prompt_ids = tokenizer(problem["prompt"]).input_ids
    engine = HFEngine(model, tokenizer)

    # First return: one base trajectory and its token entropies.
    base = engine.generate([prompt_ids], n=1, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)[0][0]
    response = list(base.token_ids)
    T = len(response)
    with torch.no_grad():
        ids = torch.tensor([prompt_ids + response])  # (1, P + T)
        logits = model(input_ids=ids).logits[:, len(prompt_ids) - 1: len(prompt_ids) - 1 + T]  # (1, T, V)
    entropy = token_entropy(logits)  # (1, T) nats
    mask = eligible_positions(torch.ones(1, T, dtype=torch.bool),
                              torch.tensor([base.finish_reason == "stop"]))  # (1, T)
    anchors = select_anchors(entropy, mask, k)[0]  # (k,) ascending, -1 = none
    anchor_list = [int(a) for a in anchors.tolist() if a >= 0]

    def text(ids_: list[int]) -> str:
        return tokenizer.decode(ids_, skip_special_tokens=True)

    base_reward = reward(text(response), problem["answer"])

    # Entropy-eliciting explore: m continuations from every state, scored on prefix ⊕ continuation.
    states = build_states(0, prompt_ids, [(0, response, anchor_list)])
    conts = engine.generate([s.prefix_ids for s in states], n=m, max_new_tokens=max_new_tokens,
                            temperature=temperature, seed=seed + 1)
    rewards = torch.tensor([[reward(text(response[: s.anchor] + c.token_ids), problem["answer"]) for c in row]
                            for s, row in zip(states, conts)])  # (S, m)
    values = state_values(rewards)  # (S,)
    low, high = wilson_interval(rewards.sum(-1), m)  # (S,), (S,)
    alpha = {v: modulation_factors(values, v) for v in ("paper", "official")}  # chain S_0..S_k, (S,) each
    adv_hat = group_advantages(rewards)  # (S, m)
    adv = alpha["paper"][:, None] * adv_hat  # (S, m)

    state_rows = []
    for j, s in enumerate(states):
        state_rows.append({
            "key": [s.key.prompt_id, s.key.trajectory_id, s.key.state_index],
            "anchor": s.anchor,
            "prefix_text": text(response[: s.anchor]),
            "rewards": rewards[j].tolist(),
            "value": float(values[j]),
            "value_ci": [float(low[j]), float(high[j])],
            "alpha": {"paper": float(alpha["paper"][j]), "official": float(alpha["official"][j])},
            "advantages": [round(float(a), 6) for a in adv[j]],
            "examples": [text(c.token_ids) for c in conts[j][:2]],
            "continuations": [text(c.token_ids) for c in conts[j]],
        })
    return {
        "step": 0,
        "prompt": problem["prompt"],
        "prompt_ids": list(prompt_ids),
        "answer": problem["answer"],
        "trajectories": [{
            "trajectory_id": 0,
            "tokens": [tokenizer.decode([t]) for t in response],
            "token_ids": list(response),
            "ends_with_eos": base.finish_reason == "stop",
            "entropy": [round(float(h), 5) for h in entropy[0]],
            "scores": [round(float(h), 5) for h in entropy[0]],
            "anchors": anchor_list,
            "reward": float(base_reward),
        }],
        "states": state_rows,
        "settings": {"model_dir": str(model_dir), "world": world, "split": split, "problem_index": problem_index, "k": k, "m": m,
                     "seed": seed, "max_new_tokens": max_new_tokens, "temperature": temperature,
                     "advantages": "A = alpha_paper * (r - mean)"},
    }


def walkthrough_sample(profile: str = "tiny", model: str = "general", problem_index: int | None = None, k: int = 4,
                       m: int = 16, seed: int = 0, cache_dir: str | Path = DEFAULT_CACHE,
                       runs_root: str | Path = "runs", max_tries: int = 20, world: str = "arithmetic") -> dict:
    """The walkthrough's annotated sample. tiny: `walkthrough` on the warm-started base model `model`, on
    problem `problem_index`, or (None) on the first of `max_tries` problems whose state values differ (so α
    has something to show; the last one tried otherwise); paper: the first annotated sample (with anchors)
    of the FR3E run of `model` and `seed` under `runs_root` (a 7B model is not sampled by hand here). world: the
    tiny world (`fr3e.tasks.worlds`); its recipe's response budget bounds the samples."""
    if profile == "tiny":
        from fr3e.study.runs import recipes
        from fr3e.training.config import load_config

        budget = load_config(recipes("tiny", world)["fr3e"]).data.max_response_tokens
        model_dir = tiny_model_dir(model, cache_dir, world=world)
        one = dict(k=k, m=m, seed=seed, world=world, max_new_tokens=budget)
        if problem_index is not None:
            return walkthrough(model_dir, problem_index=problem_index, **one)
        for i in range(max_tries):
            sample = walkthrough(model_dir, problem_index=i, **one)
            if len({s["value"] for s in sample["states"]}) > 1:
                break
        logger.info("walkthrough: problem %d (first whose state values differ)", i)
        return sample
    folder = Path(runs_root) / "paper"  # the paper and one-GPU profiles' recipes both run the paper data path
    found = sorted(folder.glob(f"fr3e-{safe_name(model)}-s{seed}-*"))
    if not found:
        raise FileNotFoundError(f"no FR3E run of {model} (seed {seed}) under {folder}; run the "
                                "table1 notebook (python -m fr3e.cli.reproduce table1) first")
    return first_sample(found[0], step=-1)


def committed_sample(results_dir: str | Path = "results") -> dict:
    """The walkthrough sample committed in `<results_dir>/walkthrough/summary.json` (the notebook's
    `source='committed'`: no model, no sampling)."""
    from fr3e.utils.io import read_json

    path = Path(results_dir) / "walkthrough" / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run the walkthrough with source='run' (make "
                                "reproduce-walkthrough) or point committed_dir at a results folder that holds it")
    sample = read_json(path, "restore it with git checkout, or rerun make reproduce-walkthrough")["sample"]
    if "prompt_ids" not in sample or "token_ids" not in sample["trajectories"][0]:
        raise ValueError(f"{path} was written before samples kept their token ids; rerun make reproduce-walkthrough")
    return sample


def walkthrough_table(sample: dict, trajectory_id: int | None = None) -> pd.DataFrame:
    """One row per state of a samples row: j, anchor, prefix, V with CI, α (both variants), mean |A|."""
    traj = sample["trajectories"][0] if trajectory_id is None else \
        next(t for t in sample["trajectories"] if t["trajectory_id"] == trajectory_id)
    tid = traj["trajectory_id"]
    rows = []
    for s in sample["states"]:
        if s["key"][1] not in (-1, tid):
            continue
        adv = s.get("advantages") or []
        rows.append({"state": f"S_{s['key'][2]}", "anchor": s["anchor"],
                     "prefix (response so far)": s["prefix_text"][-40:],
                     "V": s["value"], "V_low": s["value_ci"][0], "V_high": s["value_ci"][1],
                     "alpha_paper": s["alpha"]["paper"], "alpha_official": s["alpha"]["official"],
                     "mean_|A|": float(np.mean(np.abs(adv))) if adv else math.nan,
                     "right": int(sum(s["rewards"])), "M": len(s["rewards"])})
    return pd.DataFrame(rows)
