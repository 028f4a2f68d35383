"""What runs cost: step time by phase (`phase_seconds`), prefill computed vs served from a prefix cache
(`prefill_split`), and the wall time a plan needs on `workers` cores (`estimate_seconds`, from the per-step
and per-problem unit costs in `Costs`, measured on the 2-core machine), written into each study notebook
before it trains.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import pandas as pd

from fr3e.study.curves import RUN_KEYS

PHASES = ("time_generate", "time_score", "time_forward", "time_backward", "time_other")
"""The step's phases in `metrics.jsonl` (seconds; they sum to `time_step`)."""


def phase_seconds(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean seconds per step of each phase (`PHASES`) per (model, arm): mean over each run's steps, then over
    seeds. Columns model, arm, the phases, time_step, seeds."""
    cols = [c for c in (*PHASES, "time_step") if c in metrics]
    per_run = metrics.groupby(RUN_KEYS, sort=False)[cols].mean().reset_index()
    out = per_run.groupby(["model", "arm"], sort=False)[cols].mean()
    out["seeds"] = per_run.groupby(["model", "arm"], sort=False)["seed"].nunique()
    return out.reset_index()


def prefill_split(metrics: pd.DataFrame) -> pd.DataFrame:
    """Prefill tokens per step per (model, arm): submitted (`prefill_tokens`), computed and served from a prefix
    cache (`prefill_computed_tokens` / `prefill_cached_tokens`, measured on the steps where the trainer knows
    them: not right after an evaluation), the cached share, and generated tokens per step for scale.
    Columns model, arm, gen_tokens, prefill_tokens, prefill_computed_tokens, prefill_cached_tokens,
    cached_share, steps_measured (nan where the runs did not log the split)."""
    rows = []
    for (model, arm), g in metrics.groupby(["model", "arm"], sort=False):
        row = {"model": model, "arm": arm, "gen_tokens": float(g["gen_tokens"].mean()),
               "prefill_tokens": float(g["prefill_tokens"].mean())}
        known = (g.dropna(subset=["prefill_computed_tokens"]) if "prefill_computed_tokens" in g
                 else g.iloc[0:0])
        if len(known):
            computed = float(known["prefill_computed_tokens"].mean())
            cached = float(known["prefill_cached_tokens"].mean())
            share = cached / (computed + cached) if computed + cached > 0 else math.nan
        else:
            computed = cached = share = math.nan
        rows.append({**row, "prefill_computed_tokens": computed, "prefill_cached_tokens": cached,
                     "cached_share": share, "steps_measured": len(known)})
    return pd.DataFrame(rows)


@dataclasses.dataclass(frozen=True)
class Costs:
    """Unit costs of the tiny path world with two one-thread workers on 2 idle cores, for `estimate_seconds`.

    Measured in the compute study of a fresh-clone `make reproduce-compute` at 751b0b5 on 2 idle cores
    (`time_step` of metrics.jsonl, `seconds` of final_eval-p512.json): a GRPO++ step of the tiny recipe
    (16 prompts × 8 rollouts) 0.65 s; FR3E 1.75 s (2.7×), matched rollouts 1.62 s (2.5×), the adaptive budget
    2.65 s (4.1×); the two entropy fixes on matched rollouts are estimates from their cost at 8 rollouts (the bonus
    1.2× GRPO++'s step, its entropy with gradients; the top-20% mask 0.8×, a lighter backward) times matched
    rollouts' 2.5×. eval_problem_s: one requested problem of an evaluation (3 splits × n=16 samples + greedy;
    a final evaluation asked for 512 problems per split took 7-25 s, 10.7 s on average).
    warm_start_s: one shipped warm start, checked and copied to the cache (retraining one: `make warm-starts`).
    startup_s: process start, model load and run directory per run.
    """

    grpo_step_s: float = 0.65
    relative: tuple = (("grpo_pp", 1.0), ("fr3e", 2.7), ("grpo_pp_matched", 2.5), ("fr3e_adaptive", 4.1),
                       ("grpo_pp_entbonus", 3.0), ("grpo_pp_top20", 2.0))
    eval_problem_s: float = 0.021
    warm_start_s: float = 10.0
    startup_s: float = 5.0

    def step_s(self, arm: str) -> float:
        return self.grpo_step_s * dict(self.relative).get(arm, dict(self.relative)["fr3e"])


def fr3e_relative_cost(num_anchors: int, continuations: int, base_cost: float = 2.7, k0: int = 2, m0: int = 8,
                       fixed: float = 0.15) -> float:
    """A step of FR3E with K anchors and M continuations relative to a GRPO++ step, scaled from the recipe's
    (K0, M0) cost `base_cost`: the part `1 − fixed` (continuations: sampling and training) grows with the
    states × continuations, (1 + 2K)·M (S_0 and K states of the 2 kept trajectories), the rest does not.
    An estimate for planning; the notebook reports the measured step times beside it."""
    share = (1 + 2 * num_anchors) * continuations / ((1 + 2 * k0) * m0)
    return base_cost * (fixed + (1 - fixed) * share)


def estimate_seconds(runs: Sequence[tuple[str, int]], eval_every: int, curve_problems: int, final_problems: int,
                     warm_starts: int, workers: int, costs: Costs = Costs()) -> dict:
    """Wall time of a study from its plan: runs (arm, steps), each evaluated on `curve_problems` every
    `eval_every` steps and at the end, then on `final_problems` (0: none); `warm_starts` base models to train;
    `workers` parallel one-thread processes. Work is spread evenly over the workers (the planner keeps them
    busy; the matched runs wait for FR3E's, which go first). Returns seconds per part, total core-seconds and
    wall = total / workers."""
    train = sum(steps * costs.step_s(arm) + costs.startup_s for arm, steps in runs)
    points = sum(steps // eval_every if eval_every else 1 for _, steps in runs)
    points += sum(1 for _, steps in runs if eval_every and steps % eval_every)  # the final evaluation
    curve = points * curve_problems * costs.eval_problem_s
    final = len(runs) * final_problems * costs.eval_problem_s
    warm = warm_starts * costs.warm_start_s
    total = train + curve + final + warm
    return {"train_s": train, "curve_eval_s": curve, "final_eval_s": final, "warm_start_s": warm,
            "core_s": total, "workers": workers, "wall_s": total / max(1, workers), "runs": len(runs)}
