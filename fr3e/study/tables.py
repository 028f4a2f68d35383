"""Aggregations from run directories' rows to the paper's tables: pure functions on DataFrames, unit-tested.

`table1_summary` / `table1` (avg@n in %, mean ± sample std over seeds, one row per arm: base, GRPO++, the
controls, FR3E), `deltas` (FR3E − each GRPO++ row with a 95% paired t-interval over seeds), `delta_precision`
(half-widths, evaluation vs seed noise, seeds to halve), `gains_over_base`, `table1_study` (what Table 1's
summary.json adds), `phase_values` (per-seed start / end of training means), `composition_shares`,
`training_summary`, `cost_summary`, `paper_reference` (the one Table 1 cell the paper's public text gives).

Statistics, stated once (`STATISTICS`): "± std" is the sample standard deviation (ddof = 1) over seeds; a
single seed shows no ± . Deltas pair the two methods by seed (same seed = same base model, data order and
evaluation problems) and use a Student t-interval on the per-seed differences (95%, n − 1 degrees of
freedom); with one seed there is no interval. "End of training" is the mean over the last quarter of the steps.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fr3e.study.runs import ARM_LABELS, CONTROLS
from fr3e.study.stats import (
    fmt_mean_std,
    mean_std,
    paired_t_interval,
    seeds_for_half_width,
    t_interval,
    variance_split,
)

logger = logging.getLogger(__name__)

METHOD_LABELS = {"base": "base", **ARM_LABELS}
"""Arm (a method or a control arm) -> its Table 1 row."""
ARMS = ("base", "grpo_pp", "grpo_pp_matched", "grpo_pp_coin", "fr3e")
"""Table 1 rows per model in display order: the base model, the baselines and controls, FR3E."""
SYSTEMS = tuple(METHOD_LABELS[a] for a in ARMS)
BASELINES = ("grpo_pp", "grpo_pp_matched")
"""The GRPO++ rows FR3E is compared with (each gets its own delta and verdict)."""
HALF_WIDTH_TARGET = 2.0
"""Target half-width of the 95% interval of the FR3E − GRPO++ avg delta, in points."""
BENCHMARKS = ("easy", "medium", "hard")
"""Tiny-profile evaluation splits, easiest first."""
STANDS_IN_FOR = {"easy": "GSM8K", "medium": "MATH500", "hard": "AIME24",
                 "general": "Qwen2.5-7B", "math": "Qwen2.5-Math-7B"}
"""What each tiny split / base model mirrors in the paper's Table 1."""
LATE_FRACTION = 0.25
"""Share of the last (first) steps averaged for "end (start) of training" (our choice)."""
STATISTICS = ("avg@n in %; '± std' = sample std (ddof=1) over seeds, none with one seed; deltas FR3E − GRPO++ "
              "(each GRPO++ row: the recipe's G, and G matched to FR3E's generated tokens per prompt) paired by "
              "seed with a 95% Student t-interval (n−1 dof) on the per-seed differences, half-width = half its "
              "length; 'end of "
              "training' = mean over the last quarter of the steps, 'start' = the first quarter. Verdicts: "
              "'holds' = the 95% interval of the difference excludes 0 in the paper's direction, 'contradicted' "
              "= it excludes 0 in the other direction, 'inconclusive' = it contains 0 (or there is none); the "
              "interval is printed beside the verdict; differences of differences use a Welch interval.")
"""The statistics used by every table and claim, stated once (written into summary.json)."""


# ============================================================================================ Table 1
def with_arm(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with an `arm` column: kept where present, else the method (base rows, older run loaders)."""
    if "arm" not in frame:
        return frame.assign(arm=frame["method"])
    return frame.assign(arm=frame["arm"].where(frame["arm"].notna(), frame["method"]))


def _per_seed_scores(evals: pd.DataFrame, metric: str = "avg") -> pd.DataFrame:
    """One row per (model, arm, seed): metric in % per benchmark plus their mean ("avg"); the `method` column
    holds the arm (a method, a control arm or "base")."""
    evals = with_arm(evals).drop(columns=["method"]).rename(columns={"arm": "method"})
    wide = evals.pivot_table(index=["model", "method", "seed"], columns="benchmark", values=metric, aggfunc="mean")
    wide = wide * 100.0
    benches = [b for b in BENCHMARKS if b in wide.columns] + [b for b in wide.columns if b not in BENCHMARKS]
    wide = wide[benches]
    wide["avg"] = wide[benches].mean(axis=1)
    wide.columns.name = None
    return wide.reset_index()


def table1_summary(final_evals: pd.DataFrame, base_evals: pd.DataFrame | None = None,  # noqa: F811 - shadows
                   metric: str = "avg") -> pd.DataFrame:
    """Long table: model, system (a row of `SYSTEMS`), benchmark (+ "avg"), mean, std, seeds; in %.

    final_evals: `load_final_evals` rows; base_evals: `base_evals` rows (or None). The "avg" column is the
    mean over benchmarks per seed, then mean ± std over seeds (so its std is the std of seed averages).
    """
    frames = [final_evals] + ([base_evals] if base_evals is not None and len(base_evals) else [])
    per_seed = _per_seed_scores(pd.concat(frames, ignore_index=True), metric)
    value_cols = [c for c in per_seed.columns if c not in ("model", "method", "seed")]
    rows = []
    models = list(dict.fromkeys(per_seed["model"]))
    for model in models:
        for method in (*ARMS, *sorted(set(per_seed["method"]) - set(ARMS))):
            sub = per_seed[(per_seed["model"] == model) & (per_seed["method"] == method)]
            if sub.empty:
                continue
            for col in value_cols:
                m, s, n = mean_std(sub[col].tolist())
                rows.append({"model": model, "system": METHOD_LABELS.get(method, method), "benchmark": col,
                             "mean": m, "std": s, "seeds": n})
    return pd.DataFrame(rows, columns=["model", "system", "benchmark", "mean", "std", "seeds"])


def table1(final_evals: pd.DataFrame, base_evals: pd.DataFrame | None = None,  # noqa: F811 - shadows
           metric: str = "avg") -> pd.DataFrame:
    """Table 1 in the paper's layout: rows (model, system), columns benchmarks + avg, "mean ± std" in %."""
    summary = table1_summary(final_evals, base_evals, metric)
    summary = summary.assign(cell=[fmt_mean_std(m, s) for m, s in zip(summary["mean"], summary["std"])])
    table = summary.pivot(index=["model", "system"], columns="benchmark", values="cell")
    cols = [b for b in BENCHMARKS if b in table.columns] + \
           [b for b in table.columns if b not in BENCHMARKS and b != "avg"] + ["avg"]
    table = table[cols]
    seeds = summary.groupby(["model", "system"])["seeds"].max()
    table["seeds"] = seeds
    order = {s: i for i, s in enumerate(SYSTEMS)}
    models = list(dict.fromkeys(summary["model"]))
    table = table.reset_index()
    table["_m"] = table["model"].map({m: i for i, m in enumerate(models)})
    table["_s"] = table["system"].map(order).fillna(len(order))
    table = table.sort_values(["_m", "_s"]).drop(columns=["_m", "_s"]).set_index(["model", "system"])
    table.columns.name = None
    return table


def per_seed_deltas(final_evals: pd.DataFrame, metric: str = "avg", baseline: str = "grpo_pp",
                    arm: str = "fr3e") -> pd.DataFrame:
    """`arm` − `baseline` (default FR3E − GRPO++) per (model, seed) and benchmark (+ "avg"), in points of %:
    columns model, seed, then one column per benchmark. Seeds present for only one arm are left out."""
    per_seed = _per_seed_scores(final_evals, metric)
    value_cols = [c for c in per_seed.columns if c not in ("model", "method", "seed")]
    frames = []
    for model in dict.fromkeys(per_seed["model"]):
        sub = per_seed[per_seed["model"] == model]
        a = sub[sub["method"] == baseline].set_index("seed")[value_cols]
        b = sub[sub["method"] == arm].set_index("seed")[value_cols]
        seeds = sorted(set(a.index) & set(b.index))
        if seeds:
            frames.append((b.loc[seeds] - a.loc[seeds]).reset_index().assign(model=model))
    if not frames:
        return pd.DataFrame(columns=["model", "seed", *value_cols])
    out = pd.concat(frames, ignore_index=True)
    return out[["model", "seed", *value_cols]]


DELTA_COLUMNS = ["model", "baseline", "benchmark", "grpo_pp", "fr3e", "delta", "ci_low", "ci_high", "half_width",
                 "sd", "seeds", "wins"]


def deltas(final_evals: pd.DataFrame, metric: str = "avg", baselines: Sequence[str] | None = None,
           arm: str = "fr3e") -> pd.DataFrame:
    """FR3E − each GRPO++ row, per model and benchmark (+ "avg"), in points of %, paired by seed.

    baselines: the arms FR3E is compared with (default: those of `BASELINES` present: GRPO++ and, when
    trained, GRPO++ with matched rollouts); arm: the arm compared (FR3E).
    Columns: model, baseline (its arm), benchmark, grpo_pp (the baseline's mean over the paired seeds), fr3e
    (the arm's), delta, ci_low, ci_high (95% Student t-interval on the per-seed differences; nan with one
    seed), half_width ((ci_high − ci_low) / 2), sd (sample std of the per-seed differences), seeds, wins
    (seeds where FR3E > the baseline). Seeds present for only one arm are left out.
    """
    per_seed = _per_seed_scores(final_evals, metric)
    present = set(per_seed["method"])
    baselines = [b for b in (baselines if baselines is not None else BASELINES) if b in present]
    value_cols = [c for c in per_seed.columns if c not in ("model", "method", "seed")]
    rows = []
    for model in dict.fromkeys(per_seed["model"]):
        sub = per_seed[per_seed["model"] == model]
        b = sub[sub["method"] == arm].set_index("seed")
        for baseline in baselines:
            a = sub[sub["method"] == baseline].set_index("seed")
            seeds = sorted(set(a.index) & set(b.index))
            if not seeds:
                continue
            for col in value_cols:
                diff = (b.loc[seeds, col] - a.loc[seeds, col]).tolist()
                m, lo, hi = paired_t_interval(diff)
                rows.append({"model": model, "baseline": baseline, "benchmark": col,
                             "grpo_pp": float(a.loc[seeds, col].mean()), "fr3e": float(b.loc[seeds, col].mean()),
                             "delta": m, "ci_low": lo, "ci_high": hi, "half_width": (hi - lo) / 2,
                             "sd": mean_std(diff)[1], "seeds": len(seeds), "wins": int(sum(d > 0 for d in diff))})
    return pd.DataFrame(rows, columns=DELTA_COLUMNS)


def _eval_variance(final_evals: pd.DataFrame) -> pd.DataFrame:
    """Per run (model, arm, seed): the evaluation-noise variance of its avg over the splits, in points².

    Each split's avg_lo / avg_hi is a 95% percentile bootstrap over problems (fr3e.evaluation.evaluate), so its standard
    error is ≈ (hi − lo) / (2 · 1.96); the mean of B independent splits has variance Σ se_b² / B².
    """
    df = with_arm(final_evals)
    se = (df["avg_hi"] - df["avg_lo"]) * 100.0 / (2 * 1.959964)
    df = df.assign(var=se ** 2)
    g = df.groupby(["model", "arm", "seed"], sort=False)["var"]
    return (g.sum() / g.count() ** 2).rename("eval_var").reset_index()


def delta_precision(final_evals: pd.DataFrame, delta_table: pd.DataFrame | None = None,
                    target: float = HALF_WIDTH_TARGET, arm: str = "fr3e") -> pd.DataFrame:
    """How precise each FR3E − baseline avg delta is, which noise limits it, and what would halve it.

    Per (model, baseline), from the "avg" rows of `deltas`: half_width of the 95% paired t-interval; sd of the
    per-seed differences; eval_sd: the evaluation noise in one per-seed difference (√ of the two runs'
    bootstrap variances of their avg, `_eval_variance`: an upper bound, since both runs are scored on the same
    problems and problem difficulty partly cancels in the difference); seed_sd: √(sd² − eval_sd²), the
    seed-to-seed (training) part; dominant: which of the two is larger; seeds_to_halve: the seeds a
    t-interval with the measured sd needs to reach half the half-width (≈ 4× seeds); meets_target:
    half_width ≤ `target` points.
    """
    d = deltas(final_evals) if delta_table is None else delta_table
    d = d[d["benchmark"] == "avg"]
    var = _eval_variance(final_evals).set_index(["model", "arm", "seed"])["eval_var"]
    per_seed = _per_seed_scores(final_evals)
    rows = []
    for r in d.itertuples():
        seeds = sorted(set(per_seed.loc[(per_seed["model"] == r.model) & (per_seed["method"] == r.baseline), "seed"])
                       & set(per_seed.loc[(per_seed["model"] == r.model) & (per_seed["method"] == arm), "seed"]))
        pair_var = [var.get((r.model, arm, s), math.nan) + var.get((r.model, r.baseline, s), math.nan) for s in seeds]
        eval_var = float(np.nanmean(pair_var)) if pair_var and np.isfinite(pair_var).any() else math.nan
        split = variance_split(r.sd, eval_var)
        half = r.half_width
        rows.append({"model": r.model, "baseline": r.baseline, "seeds": int(r.seeds), "delta": r.delta,
                     "half_width": half, "sd": r.sd, "eval_sd": split["eval_sd"], "seed_sd": split["seed_sd"],
                     "dominant": split["dominant"],
                     "seeds_to_halve": seeds_for_half_width(r.sd, half / 2) if np.isfinite(half) else None,
                     "target": target, "meets_target": bool(np.isfinite(half) and half <= target)})
    return pd.DataFrame(rows, columns=["model", "baseline", "seeds", "delta", "half_width", "sd", "eval_sd",
                                       "seed_sd", "dominant", "seeds_to_halve", "target", "meets_target"])


def gains_over_base(final_evals: pd.DataFrame, base_evals: pd.DataFrame,  # noqa: F811 - shadows
                    metric: str = "avg") -> pd.DataFrame:
    """Each trained arm's avg@n gain over its base model, in points: per (model, arm), mean over seeds of
    (arm seed s − base) with a 95% t-interval over seeds (the base model's single evaluation is a constant
    here; its own evaluation noise is not in the interval). Columns model, arm, system, gain, ci_low, ci_high,
    seeds."""
    per_seed = _per_seed_scores(pd.concat([final_evals, base_evals], ignore_index=True), metric)
    rows = []
    for model in dict.fromkeys(per_seed["model"]):
        sub = per_seed[per_seed["model"] == model]
        base = sub.loc[sub["method"] == "base", "avg"]
        if base.empty:
            continue
        for arm in (a for a in (*ARMS, *sorted(set(sub["method"]) - set(ARMS))) if a != "base"):
            vals = sub.loc[sub["method"] == arm, "avg"]
            if vals.empty:
                continue
            m, lo, hi = t_interval((vals - float(base.mean())).tolist())
            rows.append({"model": model, "arm": arm, "system": METHOD_LABELS.get(arm, arm), "gain": m,
                         "ci_low": lo, "ci_high": hi, "seeds": int(vals.size)})
    return pd.DataFrame(rows, columns=["model", "arm", "system", "gain", "ci_low", "ci_high", "seeds"])


def seeds_per_arm(final_evals: pd.DataFrame) -> dict[str, dict[str, int]]:
    """{model: {Table 1 row: number of seeds}} of the trained arms."""
    df = with_arm(final_evals)
    out: dict[str, dict[str, int]] = {}
    for (model, arm), g in df.groupby(["model", "arm"], sort=False):
        out.setdefault(model, {})[METHOD_LABELS.get(arm, arm)] = int(g["seed"].nunique())
    return out


def problems_per_split(final_evals: pd.DataFrame) -> dict[str, int]:
    """{split: problems evaluated} (the smallest count over runs, so a run that saw fewer shows)."""
    if "num_problems" not in final_evals:
        return {}
    return {str(b): int(g["num_problems"].min()) for b, g in final_evals.groupby("benchmark", sort=False)}


def table1_study(final_evals: pd.DataFrame, base_evals: pd.DataFrame | None = None) -> dict:  # noqa: F811
    """The numbers a Table 1 summary.json holds beyond the table: seeds per arm, problems per split, the delta
    half-widths and what would halve them, each arm's gain over its base model."""
    precision = delta_precision(final_evals)
    return {"seeds_per_arm": seeds_per_arm(final_evals), "problems_per_split": problems_per_split(final_evals),
            "delta_half_widths": precision, "half_width_target": HALF_WIDTH_TARGET,
            "gains_over_base": (gains_over_base(final_evals, base_evals) if base_evals is not None
                                else pd.DataFrame()),
            "controls": {c.arm: {"label": c.label, "overrides": list(c.overrides),
                                 "matched_to": c.matched_to} for c in CONTROLS.values()}}


PAPER_MODELS = ("Qwen2.5-7B", "Qwen2.5-Math-7B", "Qwen2.5-32B")
PAPER_BENCHMARKS = ("AIME24", "GSM8K", "MATH500", "Minerva Math", "Gaokao2023en", "OlympiadBench", "avg")
_PAPER_KNOWN = {("Qwen2.5-32B", "AIME24"): (34.1, 40.2)}
"""The only Table 1 cell the paper's public text gives (abstract / reviews): GRPO++ 34.1, FR3E 40.2."""


def paper_reference() -> pd.DataFrame:
    """The paper's Table 1 as far as it is known: one row per (model, benchmark), "unknown" elsewhere.

    Columns: model, benchmark, GRPO++, FR3E, delta (strings; numbers only where the paper states them).
    Never invented: the paper body could not be read (only its abstract, figure captions and reviews are public).
    """
    rows = []
    for model in PAPER_MODELS:
        for bench in PAPER_BENCHMARKS:
            known = _PAPER_KNOWN.get((model, bench))
            if known:
                g, f = known
                rows.append({"model": model, "benchmark": bench, "GRPO++": f"{g:.1f}", "FR3E": f"{f:.1f}",
                             "delta": f"{f - g:+.1f}"})
            else:
                rows.append({"model": model, "benchmark": bench, "GRPO++": "unknown", "FR3E": "unknown",
                             "delta": "unknown"})
    return pd.DataFrame(rows)


# ============================================================================================ summary
def phase_values(metrics: pd.DataFrame, col: str, phase: str = "late", frac: float = LATE_FRACTION) -> pd.DataFrame:
    """Per run: the mean of `col` over the last (`phase="late"`) or first (`"early"`) `frac` of its steps.

    metrics: `load_metrics` rows (or any frame with model, method, seed, step, col). Steps where `col` is nan
    (not measured) are left out of the mean. Returns columns model, method, seed, value (one row per run).
    """
    if phase not in ("late", "early"):
        raise ValueError(f"phase must be 'late' or 'early', got {phase!r}")
    rows = []
    for (model, method, seed), g in metrics.groupby(["model", "method", "seed"], sort=False):
        g = g.sort_values("step")
        k = max(1, int(round(frac * len(g))))
        part = g.tail(k) if phase == "late" else g.head(k)
        rows.append({"model": model, "method": method, "seed": seed, "value": float(part[col].mean())})
    return pd.DataFrame(rows, columns=["model", "method", "seed", "value"])


def composition_shares(metrics: pd.DataFrame, level: str = "prompts") -> pd.DataFrame:
    """Add share columns all_right, all_wrong, mixed (fractions of the `level` groups: prompts | groups)."""
    cols = [f"{level}_all_right", f"{level}_all_wrong", f"{level}_mixed"]
    total = metrics[cols].sum(axis=1).replace(0, np.nan)
    out = metrics.copy()
    for name, col in zip(("all_right", "all_wrong", "mixed"), cols):
        out[name] = metrics[col] / total
    return out


def training_summary(metrics: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    """Per (model, method, step): mean and std over seeds of `cols` (the data behind a training-curve figure)."""
    g = metrics.groupby(["model", "method", "step"], sort=False)[list(cols)]
    mean = g.mean().add_suffix("_mean")
    std = g.std(ddof=1).add_suffix("_std")
    n = g.size().rename("seeds")
    return pd.concat([mean, std, n], axis=1).reset_index()


def cost_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per (model, method, arm): generated / prefill / trained tokens and wall seconds per run (mean over seeds),
    and generated tokens per step and per sampled prompt (what matched rollouts equalise)."""
    metrics = with_arm(metrics)
    cols = [c for c in ("gen_tokens", "prefill_tokens", "trained_tokens", "time_step", "prompts_used") if c in metrics]
    per_run = metrics.groupby(["model", "method", "arm", "seed"], sort=False)[cols].sum()
    per_run["steps"] = metrics.groupby(["model", "method", "arm", "seed"], sort=False).size()
    if "gen_tokens" in per_run:
        per_run["gen_tokens_per_step"] = per_run["gen_tokens"] / per_run["steps"]
        if "prompts_used" in per_run:
            per_run["gen_tokens_per_prompt"] = per_run["gen_tokens"] / per_run["prompts_used"].replace(0, np.nan)
    out = per_run.drop(columns=["steps"]).groupby(["model", "method", "arm"], sort=False).mean().reset_index()
    return out


def _jsonable(obj: Any) -> Any:
    """`obj` with DataFrames as lists of records, numpy scalars as Python ones, nan / inf as None, paths as text
    (what summary.json and provenance.json hold)."""
    if isinstance(obj, pd.DataFrame):
        frame = obj.reset_index() if not isinstance(obj.index, pd.RangeIndex) else obj
        return _jsonable(frame.to_dict(orient="records"))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _mean_std(cell) -> tuple[float, float]:
    """(mean, std) of a Table 1 cell "41.2 ± 3.1" or "41.2" (std nan); "–" or nothing gives (nan, nan)."""
    text = str(cell if cell is not None else "").strip()
    if not text or text == "–":
        return math.nan, math.nan
    mean, _, std = text.partition("±")
    return float(mean), float(std) if std.strip() else math.nan


def compare_tables(before: list[dict], after: list[dict], z: float = 1.96) -> pd.DataFrame:
    """Each cell of two Table 1s (`summary.json` "table" records: model, system, benchmarks, seeds) side by side:
    the difference of the means and whether it lies within z standard errors of a difference of two means over
    seeds, SE = √(s₁²/k₁ + s₂²/k₂) with each table's std and seed count. A row without a spread (one seed, e.g.
    the base models) is within only when the numbers are equal to the printed digit; `within` is then the
    bit-for-bit check a rerun on the same kind of CPU passes."""
    old = {(r["model"], r["system"]): r for r in before}
    rows = []
    for r in after:
        o = old.get((r["model"], r["system"]))
        if o is None:
            continue
        for b in [c for c in (*BENCHMARKS, "avg") if c in r and c in o]:
            (m1, s1), (m2, s2) = _mean_std(o[b]), _mean_std(r[b])
            k1, k2 = int(o.get("seeds") or 1), int(r.get("seeds") or 1)
            se = math.sqrt(s1 ** 2 / k1 + s2 ** 2 / k2) if np.isfinite(s1) and np.isfinite(s2) else math.nan
            diff = m2 - m1
            within = abs(diff) <= z * se + 1e-9 if np.isfinite(se) else abs(diff) < 0.05
            rows.append({"model": r["model"], "system": r["system"], "benchmark": b, "committed": m1,
                         "reproduced": m2, "difference": round(diff, 2),
                         "tolerance": round(z * se, 2) if np.isfinite(se) else 0.0, "within": bool(within)})
    return pd.DataFrame(rows, columns=["model", "system", "benchmark", "committed", "reproduced", "difference",
                                       "tolerance", "within"])
