"""What RL did to the policy's choices, on a world with forks: the entropy at the moves and the number of distinct
correct answers per problem of each final model, FR3E against GRPO++ (not a paper figure; the paper's Fig. 3
says FR3E keeps entropy up, and its motivation is exploration that finds more than one way to an answer).

`measure_runs` scores the final model of every run with `fr3e.evaluation.worldcard.measure` (n samples per
problem on every evaluation split, T=1) and caches the card in the run directory (`worldcard-p<problems>.json`),
so a notebook re-run reads it back; the committed per-run rows keep the verdicts recomputable. `diversity_claims`
gives FR3E − GRPO++ per base model, paired by seed, with a t-interval (exploratory verdicts).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fr3e.study.claims import interval_claim
from fr3e.study.loaders import run_meta, tiny_model_dir
from fr3e.study.runs import DEFAULT_CACHE, RunInfo, run_dirs
from fr3e.study.stats import fmt_signed, paired_t_interval
from fr3e.utils.io import DamagedFile, atomic_write_json, read_json

logger = logging.getLogger(__name__)

QUANTITIES = {
    "step_entropy": ("entropy at the moves (nats, mean over splits)", 3),
    "distinct_correct_median": ("distinct correct answers per problem (median problem, mean over splits)", 2),
    "pass": ("pass@n (share of problems solved at least once, mean over splits)", 3),
}
"""Card columns compared, with what they are and the digits shown."""
CLAIMS = {
    "step_entropy": "FR3E's final policy keeps more entropy at the moves than GRPO++'s",
    "distinct_correct_median": "FR3E's final policy finds more distinct correct answers per problem than GRPO++'s",
    "pass": "FR3E's final policy solves more problems at least once (pass@n) than GRPO++'s",
}
PAPER = "§1, Fig. 3: FR3E explores more and keeps entropy from collapsing (no diversity measure in the paper)"


def _card(model_dir: Path, cache: Path, world: str, problems: int, n: int, max_new_tokens: int) -> dict:
    if cache.exists():
        try:
            card = read_json(cache)
        except DamagedFile:
            card = {}  # a damaged cache is measured again
        if (card.get("problems_per_split"), card.get("n")) == (problems, n):
            return card
    from fr3e.evaluation.worldcard import measure

    card = measure(model_dir, world, n=n, problems=problems, train_prompts=8, max_new_tokens=max_new_tokens)
    card["problems_per_split"] = problems
    atomic_write_json(cache, card)
    return card


def measure_runs(runs: Sequence[RunInfo | str | Path], world: str, problems: int = 64, n: int = 16,
                 base_models: Sequence[str] = (), cache_dir: str | Path = DEFAULT_CACHE) -> pd.DataFrame:
    """One row per run (and per base model in `base_models`, arm "base"): arm, model, seed, run and the card's
    means over the evaluation splits (`QUANTITIES`). Each card is cached beside the model it measured."""
    rows, budget = [], 96
    for d in run_dirs(runs):
        meta = run_meta(d)
        config = read_json(d / "config.json")
        budget = config.get("data", {}).get("max_response_tokens", budget)  # the recipe's response budget
        card = _card(d / "model", d / f"worldcard-p{problems}.json", world, problems, n, budget)
        rows.append({**{k: meta[k] for k in ("arm", "model", "seed", "run")}, **card["mean"]})
    for model in base_models:
        model_dir = tiny_model_dir(model, cache_dir, world=world)
        cache = Path(cache_dir) / "worldcards" / f"{model_dir.name}-p{problems}-n{n}-t{budget}.json"
        card = _card(model_dir, cache, world, problems, n, budget)
        rows.append({"arm": "base", "model": model, "seed": 0, "run": model_dir.name, **card["mean"]})
    return pd.DataFrame(rows)


def diversity_table(cards: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds of each quantity, per base model and arm."""
    cols = list(QUANTITIES)
    g = cards.groupby(["model", "arm"])[cols]
    out = g.mean().round(3).astype(str) + " ± " + g.std().round(3).fillna(0).astype(str)
    out["seeds"] = g.size()
    return out.reset_index()


def diversity_claims(cards: pd.DataFrame, baseline: str = "grpo_pp", arm: str = "fr3e") -> list[dict]:
    """FR3E − `baseline` per base model and quantity, paired by seed, with a 95% t-interval over seeds."""
    rows = []
    for model in dict.fromkeys(cards["model"]):
        sub = cards[cards["model"] == model]
        a = sub[sub["arm"] == baseline].set_index("seed")
        b = sub[sub["arm"] == arm].set_index("seed")
        seeds = sorted(set(a.index) & set(b.index))
        if not seeds:
            continue
        for q, (what, digits) in QUANTITIES.items():
            diffs = (b.loc[seeds, q] - a.loc[seeds, q]).to_numpy(dtype=float)
            est, low, high = paired_t_interval(diffs)
            ours = (f"FR3E {b.loc[seeds, q].mean():.{digits}f} vs GRPO++ {a.loc[seeds, q].mean():.{digits}f}: "
                    f"{what}; FR3E − GRPO++ {fmt_signed(est, digits)}")
            rows.append(interval_claim(CLAIMS[q], model, PAPER, ours, est, low, high, +1,
                                       f"paired t-interval over {len(seeds)} seeds", digits))
    return rows


def collapse_rows(cards: pd.DataFrame) -> list[dict]:
    """How far each trained arm moved from its base model: the mean over seeds of each quantity against the base
    model's value, as a share (1.0 = unchanged; GRPO++'s entropy collapse shows as a small share)."""
    out = []
    for model in dict.fromkeys(cards["model"]):
        sub = cards[cards["model"] == model]
        base = sub[sub["arm"] == "base"]
        if base.empty:
            continue
        for arm, g in sub[sub["arm"] != "base"].groupby("arm"):
            out.append({"model": model, "arm": arm, **{f"{q} / base": round(float(g[q].mean() / base[q].iloc[0]), 3)
                                                      if base[q].iloc[0] else np.nan for q in QUANTITIES}})
    return out
