"""The paper's claims, tested on our runs: one row "claim | model | paper | ours | verdict" per claim and base model.

Every verdict is one of `holds`, `contradicted`, `inconclusive` (`fr3e.study.stats.verdict`) and comes from a 95%
interval of a difference, printed beside it: "inconclusive (+0.0 [−1.0, +1.1])". No verdict comes from
comparing point estimates.

The interval of each kind of claim:
- **Level at the end of training** (entropy, response length, advantage std): per seed, the mean of the
  metric over the last quarter of steps; FR3E seed s − GRPO++ seed s; paired t-interval over seeds. With one
  seed per arm: a paired bootstrap over the last-quarter steps (step t of FR3E with step t of GRPO++),
  which measures step-to-step noise only and says so.
- **Final evaluation** (response length, All-Right / All-Wrong problems): per seed, the mean over the
  splits; paired t-interval over seeds. Both methods are evaluated with the same n samples on the same
  problems, so the All-Right / All-Wrong shares compare like with like.
- **Decay** (entropy end / start): per seed, the ratio of the last-quarter to the first-quarter mean; paired.
- **Composition change over training** (All-Right / All-Wrong share of prompt groups, end − start): paired
  over seeds, and only when both methods' prompt groups have the same number of rollouts (FR3E's S_0 group:
  M continuations; GRPO++: G rollouts). The All-Right share of a group of size n scales like pⁿ, so groups
  of different sizes are not comparable; the row then says so and is inconclusive.
- **Table 1** (avg@n): `fr3e.study.report.deltas`' paired t-interval; "gain smaller on the math model" is a
  difference of differences (math − general of the per-seed gains) with a Welch interval.
- **Walkthrough** (anchors are the top-entropy tokens; α moves against the value change): exact checks on
  one trajectory, no sampling noise in the check itself; "holds" / "contradicted" state the margin.

`fr3e.study.committed` rebuilds the rows of a committed `results/<artefact>/` from the repository alone.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from fr3e.study.stats import (
    CONTRADICTED,
    HOLDS,
    INCONCLUSIVE,
    NOT_TESTABLE,
    VERDICTS,
    fmt_signed,
    fmt_verdict,
    holm,
    p_from_t_interval,
    paired_bootstrap_interval,
    paired_t_interval,
    sd_from_t_interval,
    verdict,
    welch_interval,
)
from fr3e.study.tables import LATE_FRACTION, composition_shares, deltas, phase_values

COLUMNS = ["claim", "model", "paper", "ours", "verdict"]
"""Columns shown in notebooks and results/README.md."""
DETAIL_COLUMNS = ["estimate", "ci_low", "ci_high", "direction", "interval", "n", "role"]
"""Numbers behind each verdict (kept in summary.json): FR3E − GRPO++ (or the stated difference), its 95%
interval, +1/−1 = the sign the paper claims, which interval it is, how many paired units (seeds) a t-interval
rests on (None for other intervals), and whether the claim is primary or exploratory (`PRIMARY_CLAIMS`)."""


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of the paper, tested as the sign of FR3E − GRPO++ on one quantity."""

    artefact: str
    claim: str
    paper: str
    column: str  # metrics.jsonl / eval.jsonl column
    kind: str  # "level" | "eval" | "ratio" | "change"
    direction: int  # +1: the paper says FR3E's value is higher; −1: lower
    unit: str = ""
    digits: int = 2
    scale: float = 1.0  # e.g. 100 for shares in %


SPECS: tuple[Claim, ...] = (
    Claim("entropy", "FR3E entropy higher than GRPO++ at the end of training (trained tokens)",
          "Fig. 3: FR3E's entropy stays higher", "entropy", "level", +1, " nats", 3),
    Claim("entropy", "FR3E entropy higher than GRPO++ at the end of training (full responses from the prompt)",
          "Fig. 3 (same claim, like-for-like tokens)", "entropy_base", "level", +1, " nats", 3),
    Claim("entropy", "FR3E's entropy falls less than GRPO++'s (probe set: same prompts and n; end − start)",
          "Fig. 3: FR3E's entropy stays higher and decays slower", "entropy", "probe", +1, " nats", 3),
    Claim("entropy", "FR3E entropy decays slower (end / start ratio higher)",
          "Fig. 3: no entropy collapse, slower decay", "entropy", "ratio", +1, "", 2),
    Claim("length", "FR3E responses longer than GRPO++ (trained rollouts, prefix + continuation)",
          "Fig. 4: FR3E responses longer (Math-7B plateaus near 2.5k tokens)", "response_length", "level", +1,
          " tokens", 1),
    Claim("length", "FR3E responses longer than GRPO++ at the final evaluation",
          "Fig. 4: FR3E responses longer", "mean_response_tokens", "eval", +1, " tokens", 1),
    Claim("advantage", "FR3E advantages more tightly centred (smaller std)",
          "Fig. 5: FR3E advantages centred and tightly spread around 0", "adv_std", "level", -1, "", 3),
    Claim("all_right", "FR3E raises the All-Right share of prompt groups more than GRPO++ (end − start of training)",
          "Figs. 7-8: FR3E raises All-Right", "all_right", "change", +1, " pts", 1, 100.0),
    Claim("all_right", "FR3E lowers the All-Wrong share of prompt groups more than GRPO++ (end − start of training)",
          "Figs. 7-8: FR3E lowers All-Wrong", "all_wrong", "change", -1, " pts", 1, 100.0),
    Claim("all_right", "FR3E has more All-Right evaluation problems than GRPO++ (same n and problems for both)",
          "Figs. 7-8: FR3E raises All-Right", "all_right", "eval", +1, " %", 1, 100.0),
    Claim("all_right", "FR3E has fewer All-Wrong evaluation problems than GRPO++ (same n and problems for both)",
          "Figs. 7-8: FR3E lowers All-Wrong", "all_wrong", "eval", -1, " %", 1, 100.0),
)
"""Every claim read off training metrics or final evaluations, in artefact order."""


TABLE1_CLAIM = "FR3E ≥ GRPO++ on avg@n (mean over the splits)"
TABLE1_PAPER = "Table 1: FR3E ≥ GRPO++ on most; up to +6.1 pts; AIME24/Qwen2.5-32B 40.2 vs 34.1"
MATH_CLAIM = "FR3E's gain smaller on the math-specialised base model"
MATH_PAPER = "Table 1: clear gains on general models, small on Qwen2.5-Math-7B"

PRIMARY_CLAIMS: dict[str, str] = {
    "table1": TABLE1_CLAIM,
    "entropy": SPECS[2].claim,  # one probe set, same prompts and n for both: the change from the start
    "length": SPECS[5].claim,  # at the final evaluation: same prompts and n for both methods
    "advantage": SPECS[6].claim,
    "all_right": SPECS[9].claim,  # evaluation problems: same problems and n for both methods
}
"""The primary claims, named before any run was read: one per paper artefact, each tested on every base model.
They form one family whose p-values are Holm-corrected together (`holm_family`); every other row of a claims
table is exploratory, shown with its own 95% interval and no correction. The choice favours like-for-like
populations: the same prompts, problems and n for both methods where a claim has such a variant."""
PRIMARY, EXPLORATORY = "primary", "exploratory"
FAMILY_ALPHA = 0.05
"""Family-wise error rate of the primary claims (Holm)."""


def claim_role(claim: str) -> str:
    """`primary` when the claim is one of `PRIMARY_CLAIMS`, else `exploratory`."""
    return PRIMARY if claim in PRIMARY_CLAIMS.values() else EXPLORATORY


def row_n(row: dict) -> int | None:
    """Paired units of a row's t-interval: its `n`, else read from its interval or `ours` text (committed rows)."""
    n = row.get("n")
    if n is not None and not (isinstance(n, float) and math.isnan(n)):
        return int(n)
    m = re.search(r"paired t-interval over (\d+) seeds", f"{row.get('interval') or ''} {row.get('ours') or ''}")
    return int(m.group(1)) if m else None


def claim_direction(claim: str) -> int | None:
    """+1 / −1: the sign of the difference the paper claims, for a claim text of this module."""
    if claim.startswith(MATH_CLAIM):
        return -1
    if claim.startswith("FR3E ≥ GRPO++"):
        return +1
    spec = next((s for s in SPECS if s.claim == claim), None)
    return spec.direction if spec else None


_NUMBER = r"([+−-]?\d+(?:\.\d+)?)"


def with_numbers(row: dict) -> dict:
    """A stored claims row (a committed summary.json keeps only the shown columns) with its estimate, interval,
    direction and n read back from its verdict and `ours` text, where they are missing. The text rounds: a
    p-value from it is approximate, and an interval printed as [−0.0, +0.0] has no width."""
    if row.get("estimate") is not None and row.get("direction") is not None:
        return row
    m = re.search(rf"\({_NUMBER} \[{_NUMBER}, {_NUMBER}\]\)", str(row.get("verdict") or ""))
    if not m:
        return row
    est, lo, hi = (float(x.replace("−", "-")) for x in m.groups())
    return {**row, "estimate": est, "ci_low": lo, "ci_high": hi, "direction": claim_direction(row["claim"]),
            "n": row_n(row)}


def holm_family(rows: Sequence[dict], alpha: float = FAMILY_ALPHA) -> list[dict]:
    """The primary rows among `rows` with their p-value (two-sided t against 0), Holm-adjusted p-value across
    all of them, and the verdict at family-wise level `alpha`; rows without a t-interval keep p = nan and
    stay `inconclusive` (an interval without width stays `not testable here`)."""
    primary = [with_numbers(dict(r)) for r in rows if claim_role(r["claim"]) == PRIMARY]
    for r in primary:
        n = row_n(r)
        r["p_value"] = p_from_t_interval(_num(r.get("estimate")), _num(r.get("ci_low")), _num(r.get("ci_high")),
                                         n) if n else math.nan
    for r, adjusted in zip(primary, holm([r["p_value"] for r in primary])):
        r["p_holm"] = adjusted
        direction = int(r.get("direction") or claim_direction(r["claim"]) or 1)
        r["direction"] = direction
        plain = verdict(_num(r.get("ci_low")), _num(r.get("ci_high")), direction) if np.isfinite(
            _num(r.get("ci_low"))) else INCONCLUSIVE
        if plain == NOT_TESTABLE:
            r["verdict_holm"] = NOT_TESTABLE
        elif np.isfinite(adjusted) and adjusted < alpha:
            positive = _num(r.get("estimate")) > 0
            r["verdict_holm"] = HOLDS if positive == (int(r["direction"]) > 0) else CONTRADICTED
        else:
            r["verdict_holm"] = INCONCLUSIVE
    return primary


# ================================================================================================= rows
def _row(claim: str, model: str, paper: str, ours: str, estimate: float, low: float, high: float,
         direction: int, interval: str, digits: int, why_no_interval: str = "", n: int | None = None,
         not_testable: str = "") -> dict:
    """One claims-table row; the verdict comes from (low, high) only, or is `not testable here` for the reason
    given (a read inside warm-up, a quantity the world fixes)."""
    if not_testable:
        text = f"{NOT_TESTABLE} ({fmt_signed(estimate, digits)}: {not_testable})"
    elif np.isfinite(low) and np.isfinite(high):
        text = fmt_verdict(estimate, low, high, direction, digits)
    else:
        est = f"{fmt_signed(estimate, digits)}, " if estimate is not None and np.isfinite(estimate) else ""
        text = f"{INCONCLUSIVE} ({est}no interval: {why_no_interval or interval})"
    return {"claim": claim, "model": model, "paper": paper, "ours": ours, "verdict": text,
            "estimate": estimate, "ci_low": low, "ci_high": high, "direction": direction, "interval": interval,
            "n": n, "role": claim_role(claim)}


def interval_claim(claim: str, model: str, paper: str, ours: str, estimate: float, low: float, high: float,
                   direction: int, interval: str, digits: int = 1, not_testable: str = "") -> dict:
    """One claims-table row (`COLUMNS` + `DETAIL_COLUMNS`) whose verdict comes from (low, high) only: the rows
    other studies add (fr3e.study.studies) are built like the ones here."""
    return _row(claim, model, paper, ours, estimate, low, high, direction, interval, digits,
                not_testable=not_testable)


def _paired(per_seed: pd.DataFrame, model: str) -> tuple[list, np.ndarray, np.ndarray]:
    """(seeds, GRPO++ values, FR3E values) of one model, over the seeds both methods have (finite values)."""
    sub = per_seed[per_seed["model"] == model]
    a = sub[sub["method"] == "grpo_pp"].set_index("seed")["value"]
    b = sub[sub["method"] == "fr3e"].set_index("seed")["value"]
    seeds = sorted(s for s in set(a.index) & set(b.index) if np.isfinite(a[s]) and np.isfinite(b[s]))
    return seeds, a.loc[seeds].to_numpy(dtype=float), b.loc[seeds].to_numpy(dtype=float)


def _fmt(x: float, spec: Claim) -> str:
    """A value of the claim's quantity: signed for changes, plain for levels."""
    return fmt_signed(x, spec.digits) if spec.kind == "change" else f"{x:.{spec.digits}f}"


def _models(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["model"]))


def _late_steps(metrics: pd.DataFrame, model: str, seed, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(GRPO++, FR3E) values of `column` on the last-quarter steps both runs of (model, seed) logged, by step."""
    out = []
    for method in ("grpo_pp", "fr3e"):
        g = metrics[(metrics["model"] == model) & (metrics["method"] == method) & (metrics["seed"] == seed)]
        g = g.sort_values("step")
        k = max(1, int(round(LATE_FRACTION * len(g))))
        out.append(g.tail(k).set_index("step")[column])
    steps = [s for s in out[0].index if s in out[1].index and np.isfinite(out[0][s]) and np.isfinite(out[1][s])]
    return out[0].loc[steps].to_numpy(dtype=float), out[1].loc[steps].to_numpy(dtype=float)


def _seed_claim(spec: Claim, per_seed: pd.DataFrame, what: str,
                step_pairs: Callable[[str, object], tuple[np.ndarray, np.ndarray]] | None = None) -> list[dict]:
    """Rows of a claim on per-seed values (model, method, seed, value): paired t over seeds, or with one seed
    a paired bootstrap over steps when `step_pairs(model, seed)` gives them."""
    rows = []
    for model in _models(per_seed):
        seeds, a, b = _paired(per_seed, model)
        a, b = spec.scale * a, spec.scale * b
        u, d = spec.unit, spec.digits
        if not seeds:
            rows.append(_row(spec.claim, model, spec.paper, f"{what}: not measured for both methods",
                             math.nan, math.nan, math.nan, spec.direction, "not measured", d))
            continue
        if len(seeds) >= 2:
            est, lo, hi = paired_t_interval(b - a)
            interval = f"95% paired t-interval over {len(seeds)} seeds"
        elif step_pairs is not None:
            sa, sb = step_pairs(model, seeds[0])
            est, lo, hi = paired_bootstrap_interval(spec.scale * sa, spec.scale * sb, seed=0)
            est = float(b[0] - a[0])
            interval = (f"1 seed: 95% paired bootstrap over the {len(sa)} last-quarter steps (step-to-step noise "
                        "only, not seed-to-seed)")
        else:
            est, lo, hi = float(b[0] - a[0]), math.nan, math.nan
            interval = "1 seed per method"
        ours = f"FR3E {_fmt(b.mean(), spec)} vs GRPO++ {_fmt(a.mean(), spec)}{u} ({what}); FR3E − GRPO++: {interval}"
        rows.append(_row(spec.claim, model, spec.paper, ours, est, lo, hi, spec.direction, interval, d,
                         n=len(seeds) if len(seeds) >= 2 else None))
    return rows


# ======================================================================================= claim kinds
def probe_claim(spec: Claim, probe: pd.DataFrame) -> list[dict]:
    """The change of the probe-set entropy from the first probe (before any update) to the last, per seed; FR3E
    − GRPO++ paired by seed. Both methods' policies are measured on one token population (the same prompts, n
    and sampling seeds), and the change removes whatever level they start from."""
    if probe is None or not len(probe) or spec.column not in probe:
        return _missing(spec, "no probe.jsonl in the runs (set probe_every in the recipe)",
                        _models(probe) if probe is not None and len(probe) else ["all"])
    rows = []
    for keys, g in probe.groupby(["model", "method", "seed"], sort=False):
        g = g.dropna(subset=[spec.column]).sort_values("step")
        if len(g) >= 2 and g["step"].iloc[0] == 0:
            rows.append(dict(zip(("model", "method", "seed"), keys), value=g[spec.column].iloc[-1] - g[spec.column].iloc[0]))
    per_seed = pd.DataFrame(rows, columns=["model", "method", "seed", "value"])
    return _seed_claim(spec, per_seed, "probe entropy, last probe − the probe before training")


def level_claim(spec: Claim, metrics: pd.DataFrame) -> list[dict]:
    """End-of-training level of a training metric (mean over the last quarter of steps), per model."""
    if spec.column not in metrics:
        return _missing(spec, f"{spec.column} not logged in metrics.jsonl", _models(metrics))
    per_seed = phase_values(metrics, spec.column, "late")
    return _seed_claim(spec, per_seed, "last quarter of steps, mean over seeds",
                       lambda model, seed: _late_steps(metrics, model, seed, spec.column))


def eval_claim(spec: Claim, final_evals: pd.DataFrame) -> list[dict]:
    """A final-evaluation column, mean over the splits per seed, per model."""
    if spec.column not in final_evals or final_evals[spec.column].isna().all():
        return _missing(spec, f"{spec.column} not logged in eval.jsonl", _models(final_evals))
    per_seed = (final_evals.groupby(["model", "method", "seed"], sort=False)[spec.column].mean()
                .rename("value").reset_index())
    return _seed_claim(spec, per_seed, "final evaluation, mean over splits and seeds")


def ratio_claim(spec: Claim, metrics: pd.DataFrame) -> list[dict]:
    """End / start ratio of a training metric per seed (last-quarter mean / first-quarter mean)."""
    late = phase_values(metrics, spec.column, "late")
    early = phase_values(metrics, spec.column, "early")
    ratio = late.assign(value=late["value"] / early["value"].replace(0, np.nan))
    return _seed_claim(spec, ratio, "end / start, mean over seeds")


def change_claim(spec: Claim, metrics: pd.DataFrame, level: str = "prompts") -> list[dict]:
    """Change of an All-Right / All-Wrong share over training (last quarter − first quarter), per seed;
    only between prompt groups of the same size."""
    shares = composition_shares(metrics, level)
    late = phase_values(shares, spec.column, "late")
    early = phase_values(shares, spec.column, "early")
    change = late.assign(value=late["value"] - early["value"])
    rows = _seed_claim(spec, change, "change end − start of training, mean over seeds")
    for row in rows:
        sizes = _group_sizes(metrics, row["model"])
        if len(sizes) == 2 and sizes["fr3e"] == sizes["grpo_pp"]:
            row["ours"] += f"; like for like: both methods' prompt groups hold {sizes['fr3e']} rollouts"
            continue
        why = ("prompt groups of different sizes (FR3E {fr3e}, GRPO++ {grpo_pp} rollouts): the All-Right share of "
               "n rollouts scales like pⁿ, so the shares are not comparable; see the evaluation claim at equal n"
               .format(**sizes) if len(sizes) == 2 else
               "group sizes not recorded in config.json, so like-for-like cannot be checked")
        row.update(verdict=f"{INCONCLUSIVE} (not like for like: {why})", ci_low=math.nan, ci_high=math.nan,
                   interval="none: " + why)
    return rows


def _group_sizes(metrics: pd.DataFrame, model: str) -> dict:
    if "group_size" not in metrics:
        return {}
    sub = metrics[metrics["model"] == model]
    out = {}
    for method in ("fr3e", "grpo_pp"):
        vals = {int(v) for v in sub.loc[sub["method"] == method, "group_size"] if v is not None and np.isfinite(v)}
        if len(vals) == 1:
            out[method] = vals.pop()
    return out


def _missing(spec: Claim, why: str, models: Sequence[str]) -> list[dict]:
    return [_row(spec.claim, m, spec.paper, why, math.nan, math.nan, math.nan, spec.direction, why, spec.digits)
            for m in models or ["–"]]


KINDS: dict[str, Callable[[Claim, pd.DataFrame], list[dict]]] = {
    "level": level_claim, "eval": eval_claim, "ratio": ratio_claim, "change": change_claim, "probe": probe_claim}
"""Claim kind -> the function computing its rows ("eval" reads final evaluations, "probe" probe.jsonl, the rest
metrics)."""


# ============================================================================================ Table 1
def claim_table1_from_deltas(d: pd.DataFrame) -> list[dict]:
    """Table 1 claims from a `fr3e.study.report.deltas` table (live, or as committed in summary.json).

    Per model and GRPO++ row (the `baseline` column: GRPO++, GRPO++ with matched rollouts; tables without
    it compare with GRPO++): the avg row's paired t-interval. Math − general: the difference of the two
    models' mean per-seed gains, Welch interval from each model's (delta, sd of per-seed differences, seeds);
    the sd is recovered from the t-interval when a committed table lacks it.
    """
    from fr3e.study.tables import METHOD_LABELS

    d = d if "baseline" in d else d.assign(baseline="grpo_pp")
    avg = d[d["benchmark"] == "avg"]
    rows = []
    for baseline in dict.fromkeys(avg["baseline"]):
        label = METHOD_LABELS.get(baseline, baseline)
        claim = TABLE1_CLAIM if baseline == "grpo_pp" else TABLE1_CLAIM.replace("GRPO++", label)
        gains = {}
        for r in avg[avg["baseline"] == baseline].itertuples():
            n = int(r.seeds)
            interval = f"95% paired t-interval over {n} seeds" if n >= 2 else "1 seed per method"
            ours = (f"FR3E {r.fr3e:.1f} vs {label} {r.grpo_pp:.1f} % (mean over splits and seeds); FR3E − {label}: "
                    f"{interval}")
            rows.append(_row(claim, r.model, TABLE1_PAPER, ours, r.delta, _num(r.ci_low), _num(r.ci_high), +1,
                             interval, 1, n=n if n >= 2 else None))
            sd = _num(getattr(r, "sd", math.nan))
            gains[r.model] = (r.delta, sd if np.isfinite(sd) else sd_from_t_interval(_num(r.ci_low), _num(r.ci_high),
                                                                                     n), n)
        if "general" in gains and "math" in gains:
            (mm, sm, nm), (mg, sg, ng) = gains["math"], gains["general"]
            est, lo, hi = welch_interval(mm, sm, nm, mg, sg, ng)
            interval = f"95% Welch interval of a difference of differences ({nm} and {ng} seeds)"
            ours = (f"gain FR3E − {label}: math {fmt_signed(mm)} vs general {fmt_signed(mg)} pts; math − general: "
                    f"{interval}")
            math_claim = MATH_CLAIM if baseline == "grpo_pp" else f"{MATH_CLAIM} (vs {label})"
            rows.append(_row(math_claim, "math − general", MATH_PAPER, ours, est, lo, hi, -1, interval, 1))
    return rows


def claim_table1(final_evals: pd.DataFrame, baselines: Sequence[str] | None = None) -> list[dict]:
    """Table 1: FR3E ≥ each GRPO++ row on avg@n per model; the gain smaller on the math model (difference of
    differences). baselines: the GRPO++ arms (default: `fr3e.study.report.BASELINES` present in the data)."""
    return claim_table1_from_deltas(deltas(final_evals, baselines=baselines))


def select_arms(frame: pd.DataFrame, baseline: str = "grpo_pp", arm: str = "fr3e") -> pd.DataFrame:
    """The rows of the two compared arms, with `method` set to their roles ("grpo_pp" for `baseline`, "fr3e"
    for `arm`), so the claims below compare any baseline arm (e.g. "grpo_pp_matched") with FR3E. Frames
    without an `arm` column are returned as they are."""
    if frame is None or "arm" not in frame:
        return frame
    out = frame[frame["arm"].isin([baseline, arm])]
    return out.assign(method=out["arm"].map({baseline: "grpo_pp", arm: "fr3e"}))


def _num(x) -> float:
    return math.nan if x is None else float(x)


# ======================================================================================== walkthrough
def claim_walkthrough(sample: dict, trajectory_id: int | None = None) -> list[dict]:
    """Figs. 1-2 on one annotated trajectory: anchors are the top-entropy tokens; α moves against the value change.

    Exact checks of the method on one trajectory (no interval: nothing in the check is sampled again).
    """
    trajs = sample["trajectories"]
    traj = trajs[0] if trajectory_id is None else next(t for t in trajs if t["trajectory_id"] == trajectory_id)
    scores = np.asarray(traj.get("scores") or traj["entropy"], dtype=float)
    anchors = list(traj["anchors"])
    eligible = np.ones(scores.size, dtype=bool)
    if scores.size:
        eligible[0] = False  # position 0 and a final EOS are never anchors (fr3e.method.anchors)
        if traj["tokens"] and traj["tokens"][-1].startswith("</"):
            eligible[-1] = False
    others = scores[eligible & ~np.isin(np.arange(scores.size), anchors)]
    a_scores = scores[anchors] if anchors else np.zeros(0)
    ours = (f"anchor entropies {', '.join(f'{x:.2f}' for x in a_scores)} nats vs other tokens' median "
            f"{np.median(others) if others.size else math.nan:.2f}, max {others.max() if others.size else math.nan:.2f}")
    exact = "exact check on one trajectory"
    if not a_scores.size:
        verdict = f"{INCONCLUSIVE} (no anchors on this trajectory)"
        margin = math.nan
    else:
        margin = float(a_scores.min() - (others.max() if others.size else 0.0))
        ok = others.size == 0 or margin >= 0  # ties go to the earliest position, so equality is allowed
        verdict = (f"{HOLDS if ok else CONTRADICTED} ({exact}: lowest anchor − highest other token "
                   f"{fmt_signed(margin, 2)} nats)")
    rows = [{"claim": "Anchors are the K highest-entropy tokens of the base trajectory", "model": "–",
             "paper": "§3 first return: forks = highest-entropy positions", "ours": ours, "verdict": verdict,
             "estimate": margin, "ci_low": margin, "ci_high": margin, "direction": 1, "interval": exact}]
    tid = traj["trajectory_id"]
    chain = sorted((s for s in sample["states"] if s["key"][1] in (-1, tid)), key=lambda s: s["key"][2])
    ok, parts = [], []
    for prev, cur in zip(chain, chain[1:]):
        dv, a = cur["value"] - prev["value"], cur["alpha"]["paper"]
        if dv != 0:
            ok.append((dv > 0 and a < 1) or (dv < 0 and a > 1))
        parts.append(f"S_{cur['key'][2]}: ΔV {fmt_signed(dv, 2)} → α {a:.2f}")
    if not ok:
        verdict = f"{INCONCLUSIVE} (no value change along this trajectory)"
    else:
        verdict = f"{HOLDS if all(ok) else CONTRADICTED} ({exact}: {sum(ok)}/{len(ok)} value changes move α the other way)"
    rows.append({"claim": "α < 1 where the value rose, α > 1 where it fell (paper variant)", "model": "–",
                 "paper": "§3 adaptive advantage modulation α_j = exp(−(V_j − V_{j−1}))",
                 "ours": "; ".join(parts) or "no anchor states", "verdict": verdict,
                 "estimate": float(sum(ok)), "ci_low": math.nan, "ci_high": math.nan, "direction": 1,
                 "interval": exact})
    return rows


# ============================================================================================== table
ARTEFACTS = ("table1", "entropy", "length", "advantage", "all_right")
"""Artefacts with claims on runs (the walkthrough's are on one sample)."""


def claims_table(metrics: pd.DataFrame | None = None, final_evals: pd.DataFrame | None = None,
                 artefacts: Sequence[str] | None = None, sample: dict | None = None,
                 details: bool = False, baseline: str = "grpo_pp", baselines: Sequence[str] | None = None,
                 probe: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows "claim | model | paper | ours | verdict" for the requested artefacts (default: all the data allows).

    metrics: `load_metrics`; final_evals: `load_final_evals`; sample: a samples row (walkthrough).
    details: also the numbers behind each verdict (`DETAIL_COLUMNS`).
    baseline: the arm FR3E is compared with in the training-curve and evaluation claims (`select_arms`);
    baselines: the GRPO++ rows of the Table 1 claims (default: every one present, see `claim_table1`).
    """
    artefacts = list(artefacts) if artefacts is not None else [*ARTEFACTS, "walkthrough"]
    rows: list[dict] = []
    for name in artefacts:
        if name == "walkthrough":
            if sample is not None:
                rows += claim_walkthrough(sample)
            continue
        if name not in ARTEFACTS:
            raise ValueError(f"unknown artefact {name!r}; claims exist for {[*ARTEFACTS, 'walkthrough']}")
        if name == "table1" and final_evals is not None:
            rows += claim_table1(final_evals, baselines)
        for spec in (s for s in SPECS if s.artefact == name):
            source = {"eval": final_evals, "probe": probe}.get(spec.kind, metrics)
            if spec.kind == "probe" and (source is None or not len(source)):
                continue  # runs without a probe set: the claim is left out, not failed
            data = select_arms(source, baseline)
            if data is not None:
                rows += KINDS[spec.kind](spec, data)
    return pd.DataFrame(rows, columns=COLUMNS + (DETAIL_COLUMNS if details else []))


def verdict_counts(rows: Sequence[dict] | pd.DataFrame) -> dict[str, int]:
    """How many rows hold / are contradicted / are inconclusive / are not testable here."""
    verdicts = rows["verdict"] if isinstance(rows, pd.DataFrame) else [r["verdict"] for r in rows]
    out = dict.fromkeys(VERDICTS, 0)
    for v in verdicts:
        out[next(name for name in VERDICTS if v.startswith(name))] += 1
    return out

