"""Learning curves and comparisons at equal x (the compute study and the ablations read them).

Every run evaluates a few problems every `eval_every` steps (`eval.jsonl`); `curves` puts each evaluation on
four x axes (`X_AXES`): training steps, generated tokens, generated + prefill tokens and training wall time
(Σ `time_step`, evaluation excluded), each cumulated over the steps up to it from `metrics.jsonl`. The base
model's evaluation on the same problems is every curve's point at x = 0. `paired_at_equal_x` interpolates
each seed's curve (piecewise linear, `interpolate`) at one common x, the largest every curve of both arms
reaches (no curve is extrapolated); per seed the difference arm − baseline, then a 95% paired t-interval over
seeds and the three-way verdict. `paired_final` pairs the final evaluations the same way.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from fr3e.study.stats import NOT_TESTABLE, mean_std, paired_t_interval

X_AXES = {"step": "training steps", "gen_tokens": "generated tokens",
          "gen_prefill_tokens": "generated + prefill tokens", "train_seconds": "training wall time (s)"}
"""The compute study's x axes: `curves` column -> axis label."""


RUN_KEYS = ["model", "arm", "seed", "run"]


def cumulative_costs(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per run and step: the compute spent up to the end of that step, and a step-0 row of zeros.

    metrics: `fr3e.study.runs.load_metrics` rows (model, arm, seed, run, step, gen_tokens, prefill_tokens, time_step).
    Returns RUN_KEYS, step, gen_tokens, gen_prefill_tokens, train_seconds (cumulative sums; evaluation time is
    not in `time_step`, so periodic evaluations do not count as training time).
    """
    need = ["step", "gen_tokens", "prefill_tokens", "time_step"]
    missing = [c for c in need if c not in metrics]
    if missing:
        raise ValueError(f"metrics need columns {need}; missing {missing}")
    frames = []
    for keys, g in metrics.groupby(RUN_KEYS, sort=False):
        g = g.sort_values("step")
        out = pd.DataFrame({"step": np.r_[0, g["step"].to_numpy()],
                            "gen_tokens": np.r_[0, g["gen_tokens"].cumsum().to_numpy()],
                            "gen_prefill_tokens": np.r_[0, (g["gen_tokens"] + g["prefill_tokens"]).cumsum().to_numpy()],
                            "train_seconds": np.r_[0.0, g["time_step"].cumsum().to_numpy()]})
        for k, v in zip(RUN_KEYS, keys):
            out[k] = v
        frames.append(out)
    return pd.concat(frames, ignore_index=True)[[*RUN_KEYS, *X_AXES]]


def accuracy(evals: pd.DataFrame) -> pd.DataFrame:
    """avg@n in %, mean over the benchmarks, per (RUN_KEYS, step): columns RUN_KEYS, step, acc."""
    return (evals.groupby([*RUN_KEYS, "step"], sort=False)["avg"].mean() * 100.0).rename("acc").reset_index()


def curves(metrics: pd.DataFrame, evals: pd.DataFrame, base: pd.DataFrame | None = None) -> pd.DataFrame:
    """Accuracy against every x axis: one row per evaluation of every run (and x = 0 from the base model).

    metrics: `load_metrics`; evals: `load_evals` (the periodic evaluations and the run's own final one);
    base: `fr3e.study.runs.base_evals` of the same problems and n (the step-0 point of every run of that model;
    None: curves start at the first evaluation). Returns RUN_KEYS, step, acc, and the `X_AXES` columns.
    """
    points = accuracy(evals)
    if base is not None and len(base):
        base_acc = (base.groupby("model")["avg"].mean() * 100.0).to_dict()
        runs = points.drop_duplicates("run")[RUN_KEYS]
        zero = runs[runs["model"].isin(base_acc)].assign(step=0)
        zero["acc"] = zero["model"].map(base_acc)
        points = pd.concat([zero, points[points["step"] > 0]], ignore_index=True)
    out = points.merge(cumulative_costs(metrics), on=[*RUN_KEYS, "step"], how="inner")
    return out.sort_values([*RUN_KEYS, "step"]).reset_index(drop=True)[[*RUN_KEYS, "step", "acc",
                                                                         *[c for c in X_AXES if c != "step"]]]


def interpolate(x: Sequence[float], y: Sequence[float], at: float | Sequence[float]) -> np.ndarray:
    """y at `at`, piecewise linear between the points (x, y); nan outside [min x, max x] (never extrapolated).

    x: (N,) non-decreasing (cumulative costs); at a repeated x the last y is kept. Returns an array shaped
    like `at`.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    at = np.asarray(at, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"x and y must be the same non-empty 1-D shape, got {x.shape} and {y.shape}")
    if np.any(np.diff(x) < 0):
        raise ValueError("x must be non-decreasing (a cumulative cost)")
    keep = np.r_[x[1:] != x[:-1], True]  # (N,) the last point of each run of equal x
    x, y = x[keep], y[keep]
    out = np.interp(at, x, y)
    return np.where((at < x[0]) | (at > x[-1]), np.nan, out)


def common_x(curves: pd.DataFrame, x: str, arms: Sequence[str]) -> dict[str, float]:
    """Per model: the largest x that every run of `arms` reaches (min over runs of their max x)."""
    sub = curves[curves["arm"].isin(arms)]
    return sub.groupby(["model", "run"])[x].max().groupby("model").min().to_dict()


COMPARISON_COLUMNS = ["model", "x", "at", "arm", "baseline", "arm_acc", "baseline_acc", "delta", "ci_low",
                      "ci_high", "sd", "seeds", "wins", "interval", "testable"]


def compare_paired(model: str, x: str, at: float, arm: str, baseline: str, arm_values: dict,
                   baseline_values: dict) -> dict | None:
    """One `COMPARISON_COLUMNS` row from per-seed values {seed: accuracy %} of the two arms: arm − baseline
    paired by seed (seeds with a finite value in both), 95% paired t-interval; None without a common seed."""
    seeds = sorted(s for s in set(arm_values) & set(baseline_values)
                   if np.isfinite(arm_values[s]) and np.isfinite(baseline_values[s]))
    if not seeds:
        return None
    diff = [arm_values[s] - baseline_values[s] for s in seeds]
    m, lo, hi = paired_t_interval(diff)
    return {"model": model, "x": x, "at": float(at), "arm": arm, "baseline": baseline,
            "arm_acc": float(np.mean([arm_values[s] for s in seeds])),
            "baseline_acc": float(np.mean([baseline_values[s] for s in seeds])),
            "delta": m, "ci_low": lo, "ci_high": hi, "sd": mean_std(diff)[1], "seeds": len(seeds),
            "wins": int(sum(d > 0 for d in diff)),
            "interval": f"95% paired t-interval over {len(seeds)} seeds" if len(seeds) > 1 else "1 seed",
            "testable": True}


def paired_at_equal_x(curves: pd.DataFrame, x: str, arm: str, baseline: str,
                      at: dict[str, float] | float | None = None, warmup_steps: int = 0) -> pd.DataFrame:
    """arm − baseline accuracy at one common x per model, paired by seed, with a 95% paired t-interval.

    curves: `curves` rows; x: an `X_AXES` column; at: the x to compare at (one value, or per model; default
    `common_x` of the two arms: no curve is extrapolated). Each seed's curve is interpolated at `at`; seeds
    missing either arm (or not reaching `at`) are left out. Returns `COMPARISON_COLUMNS` (accuracies in %,
    delta in points; ci nan with fewer than 2 seeds).

    warmup_steps: the recipes' learning-rate warm-up. A read where some run of either arm is still at a step
    <= warmup_steps compares a policy that has barely started learning: the row keeps its numbers but no
    interval, and says `not testable here` and why (`testable` False), so no verdict is read off it.
    """
    reach = common_x(curves, x, [arm, baseline]) if at is None else None
    rows = []
    for model in dict.fromkeys(curves["model"]):
        where = reach.get(model) if reach is not None else (at.get(model) if isinstance(at, dict) else at)
        if where is None or not np.isfinite(where):
            continue
        sub = curves[curves["model"] == model]
        vals = [{seed: float(interpolate(g.sort_values(x)[x], g.sort_values(x)["acc"], where))
                 for seed, g in sub[sub["arm"] == a].groupby("seed")} for a in (arm, baseline)]
        row = compare_paired(model, x, where, arm, baseline, *vals)
        if row is None:
            continue
        if warmup_steps and x != "step":
            steps = {a: min(float(interpolate(g.sort_values(x)[x], g.sort_values(x)["step"], where))
                            for _, g in sub[sub["arm"] == a].groupby("seed")) for a in (arm, baseline)}
            early = {a: s for a, s in steps.items() if s <= warmup_steps}
            if early:
                who = ", ".join(f"{a} at step {s:.3g}" for a, s in early.items())
                row.update(ci_low=np.nan, ci_high=np.nan, testable=False,
                           interval=(f"{NOT_TESTABLE}: at this x the runs of {who}, inside the {warmup_steps}-step "
                                     "learning-rate warm-up; compare at a budget both arms reach after it"))
        rows.append(row)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def paired_final(final_evals: pd.DataFrame, arm: str, baseline: str) -> pd.DataFrame:
    """arm − baseline at equal steps from the final evaluations (`load_final_eval` / `load_final_evals`): the
    mean over benchmarks per seed, paired by seed; `COMPARISON_COLUMNS` with x = "step", at = the last step."""
    acc = accuracy(final_evals)
    rows = []
    for model in dict.fromkeys(acc["model"]):
        sub = acc[acc["model"] == model]
        vals = [sub[sub["arm"] == a].set_index("seed")["acc"].to_dict() for a in (arm, baseline)]
        row = compare_paired(model, "step", float(sub["step"].max()), arm, baseline, *vals)
        if row is not None:
            rows.append(row)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def mean_curve(curves: pd.DataFrame, x: str, points: int = 40) -> pd.DataFrame:
    """Per (model, arm): mean and std over seeds of accuracy on a grid of `points` x values from 0 to the
    largest x every seed of the arm reaches, so each point averages the same seeds (past the shortest seed the
    mean would change its membership, and a single seed's last point would read as a trend).
    Returns model, arm, x, mean, std, seeds."""
    rows = []
    for (model, arm), g in curves.groupby(["model", "arm"], sort=False):
        grid = np.linspace(0.0, float(g.groupby("seed")[x].max().min()), points)
        per_seed = np.array([interpolate(s.sort_values(x)[x], s.sort_values(x)["acc"], grid)
                             for _, s in g.groupby("seed")])  # (seeds, points)
        n = np.isfinite(per_seed).sum(axis=0)  # (points,)
        with warnings.catch_warnings():  # a grid point no seed reaches: nan, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(per_seed, axis=0)
            std = np.nanstd(per_seed, axis=0, ddof=1) if per_seed.shape[0] > 1 else np.full(points, np.nan)
        rows.append(pd.DataFrame({"model": model, "arm": arm, "x": grid, "mean": mean,
                                  "std": np.where(n > 1, std, np.nan), "seeds": n}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["model", "arm", "x", "mean", "std", "seeds"])
