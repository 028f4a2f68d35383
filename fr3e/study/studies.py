"""What FR3E buys per unit of compute, and which of its parts matter (not in the paper): the study logic behind
`notebooks/07_compute.ipynb` and `notebooks/08_ablations.ipynb`.

Not paper maths: the paper holds steps equal, never compute, and gives no K, M, scorer or modulation
ablation. Everything here is a pure function on the DataFrames `fr3e.study.runs` loads, except `study_runs`,
and `compute_runs` / `ablation_runs`, which ask `fr3e.study.launch.ensure_runs` for the runs (trained if missing, reused
when finished).

- **Arms.** The compute study trains GRPO++, GRPO++ with matched rollouts (`fr3e.study.runs.CONTROLS["matched"]`),
  GRPO++ with matched rollouts and TRL's adaptive entropy bonus (`entropy_bonus`), GRPO++ with matched rollouts on
  its top-20% entropy tokens (`TOP_ENTROPY`), FR3E and FR3E with the adaptive exploration budget (`ADAPTIVE`, `fr3e.adaptive_budget=true`).
  The ablations change one factor of the FR3E recipe at a time (`FACTORS`); the recipe's own value is the plain
  FR3E arm, so its runs are shared with the compute study when steps and evaluation agree.
- **Curves and equal x** (`fr3e.study.curves`): every evaluation on four x axes (steps, generated tokens,
  generated + prefill tokens, training wall time); paired differences at one common x that every curve
  reaches, and at the final evaluation on more problems (`fr3e.study.loaders.final_eval`).
- **Cost** (`fr3e.study.costs`): step time by phase, prefill served from a prefix cache, and the wall time a
  plan needs (`estimate_seconds`, written into each notebook before it trains).

Deviation from the issue's wording: "optimizer steps" are training steps (one rollout batch each); the tiny
recipes take one optimizer update per batch (`optim.updates_per_batch: 1`), so the two are the same there.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fr3e.study.costs import PHASES, Costs, fr3e_relative_cost
from fr3e.study.curves import COMPARISON_COLUMNS, X_AXES, accuracy, paired_at_equal_x, paired_final
from fr3e.study.runs import ARM_LABELS, CONTROLS, Control
from fr3e.study.stats import NOT_TESTABLE, fmt_mean_std, fmt_signed, mean_std, paired_t_interval

# ================================================================================================ arms
ADAPTIVE_OVERRIDE = "fr3e.adaptive_budget=true"
ADAPTIVE = Control("fr3e_adaptive", "fr3e", "FR3E (adaptive budget)", (ADAPTIVE_OVERRIDE,))
"""FR3E with the adaptive exploration budget (our extension, not in the paper): continuations per state in rounds,
a settled state stops early and its budget moves to unsettled ones."""
ENTROPY_TARGETS = {"paths": {"general": 0.70, "math": 0.60}, "arithmetic": {"general": 0.044, "math": 0.031}}
"""The adaptive entropy bonus's target H̄ per tiny world and base model, set as TRL's documentation advises (close
to the entropy seen early in training): each base model's mean token entropy on GRPO++'s first step at the frozen
recipe (paths: `general` 0.694 nats, `math` 0.604, seed 0 of the compute study's GRPO++ runs; arithmetic: 0.044
and 0.031, the step-1 mean over 5 seeds of its Table 1 GRPO++ runs in results/arithmetic/entropy/). A target above
a model's own early entropy makes the bonus raise that entropy from the first step, which is not the rule's intent:
the path world's `math` arm once ran with `general`'s 0.70 and ended below its base model."""


def entropy_bonus(world: str = "arithmetic") -> Control:
    """GRPO++ with matched rollouts and TRL's adaptive entropy bonus (coefficient from 0, ±0.005 per optimizer step,
    TRL's defaults; the target of `ENTROPY_TARGETS` for each base model): the first fix for entropy collapse a TRL
    user would try, on the GRPO++ that samples as many tokens per prompt as FR3E (`matched_to="fr3e"`), so FR3E
    and the fix compare at equal generated tokens at every step, past the learning-rate warm-up."""
    targets = ENTROPY_TARGETS[world]
    return Control("grpo_pp_entbonus", "grpo_pp", "GRPO++ (matched, adaptive entropy bonus)",
                   ("optim.adaptive_entropy=true",), matched_to="fr3e",
                   per_model=tuple((model, (f"optim.entropy_target={t}",)) for model, t in targets.items()))


TOP_ENTROPY = Control("grpo_pp_top20", "grpo_pp", "GRPO++ (matched, top-20% entropy tokens)",
                      ("optim.top_entropy_quantile=0.2",), matched_to="fr3e")
"""GRPO++ with matched rollouts whose policy gradient flows through the top 20% highest-entropy tokens only ("Beyond
the 80/20 Rule"), matched to FR3E's tokens like `entropy_bonus`."""

COMPUTE_ARMS = ("grpo_pp", "grpo_pp_matched", "grpo_pp_entbonus", "grpo_pp_top20", "fr3e", "fr3e_adaptive")
"""The compute study's arms in display order (baseline first)."""
COMPARISONS = (("fr3e", "grpo_pp"), ("fr3e", "grpo_pp_matched"), ("fr3e", "grpo_pp_entbonus"),
               ("fr3e", "grpo_pp_top20"), ("fr3e_adaptive", "grpo_pp"), ("fr3e_adaptive", "fr3e"))
"""(arm, baseline) pairs the compute study gives verdicts for: FR3E against every GRPO++ row (plain, matched
rollouts and the two cheap fixes for entropy collapse), the adaptive budget against GRPO++ and against plain FR3E
(what adapting buys)."""


def adaptive_available() -> bool:
    """Whether this version of `fr3e.training.config` has the adaptive budget (`fr3e.adaptive_budget`)."""
    from fr3e.training.config import FR3EConfig

    return "adaptive_budget" in {f.name for f in dataclasses.fields(FR3EConfig)}


def compute_controls(adaptive: bool | None = None, world: str | None = None) -> list[Control]:
    """The compute study's arms beyond the two recipes: matched rollouts, where the config has it (default:
    `adaptive_available()`) the adaptive budget, and with a tiny `world` the two fixes for entropy collapse (the
    entropy bonus's target is the world's, `ENTROPY_TARGETS`)."""
    adaptive = adaptive_available() if adaptive is None else adaptive
    fixes = [entropy_bonus(world), TOP_ENTROPY] if world is not None else []
    return [CONTROLS["matched"], *fixes, *([ADAPTIVE] if adaptive else [])]


@dataclasses.dataclass(frozen=True)
class Factor:
    """One ablated factor of the FR3E recipe: its config key, the values tried and the question it answers."""

    name: str  # short name in tables: "K", "M", "scorer", "modulation"
    key: str  # config override key, e.g. "fr3e.num_anchors"
    values: tuple
    question: str

    @property
    def field(self) -> str:
        return self.key.split(".")[-1]

    def arm(self, value, default) -> str:
        """The arm of one value: "fr3e" for the recipe's own value, else e.g. "fr3e_k_1", "fr3e_scorer_random"."""
        return "fr3e" if value == default else f"fr3e_{self.name.lower()}_{value}"

    def control(self, value) -> Control:
        return Control(self.arm(value, None), "fr3e", f"FR3E {self.name}={value}", (f"{self.key}={value}",))


FACTORS = (
    Factor("K", "fr3e.num_anchors", (1, 2, 4),
           "How many anchors per trajectory does FR3E need? (the paper gives no K; the authors' script uses 4)"),
    Factor("M", "fr3e.continuations_per_state", (4, 8, 16),
           "How many continuations per state? (the paper gives no M; the authors' script uses 16)"),
    Factor("scorer", "fr3e.scorer", ("entropy", "surprisal", "random", "newline"),
           "Is entropy the reason it works, or would any branch point do?"),
    Factor("modulation", "fr3e.modulation", ("paper", "official", "none"),
           "Does α matter, or is the extra exploration doing the work?"),
)
"""The ablations: one factor at a time around the tiny FR3E recipe."""


def recipe_defaults(recipe: str | Path, factors: Sequence[Factor] = FACTORS) -> dict[str, object]:
    """The recipe's value of every factor: {"fr3e.num_anchors": 2, ...}."""
    from fr3e.training.config import load_config

    config = load_config(recipe)
    return {f.key: getattr(config.fr3e, f.field) for f in factors}


def ablation_controls(defaults: dict, factors: Sequence[Factor] = FACTORS,
                      values: dict[str, Sequence] | None = None) -> list[Control]:
    """One control arm per factor value that differs from the recipe's (`defaults`, from `recipe_defaults`).
    values: factor name -> the values to try; a factor it does not name keeps the recipe's value (None: every
    value of every factor)."""
    out = []
    for f in factors:
        for v in f.values if values is None else values.get(f.name, ()):
            if v != defaults[f.key]:
                out.append(f.control(v))
    return out


def labels(controls: Sequence[Control] = ()) -> dict[str, str]:
    """Arm -> display label: the Table 1 rows, the adaptive budget and the given controls."""
    fixes = (entropy_bonus(), TOP_ENTROPY)
    return {**ARM_LABELS, ADAPTIVE.arm: ADAPTIVE.label, **{c.arm: c.label for c in (*fixes, *controls)}}


# ================================================================================================ runs
def _tiny_recipes(profile: str, world: str = "arithmetic") -> dict:
    from fr3e.study.runs import recipes

    if profile != "tiny":
        raise ValueError(f"the compute and ablation studies run the tiny profile only (got {profile!r}); on a GPU "
                         "node use `python -m fr3e.cli.reproduce --profile tiny compute` or plan paper runs with "
                         "`make plan-table1`")
    return recipes("tiny", world)


def compute_runs(models: Sequence[str], seeds: Sequence[int], steps: int | None = None, eval_every: int = 20,
                 eval_n: int | None = 16, curve_problems: int = 64, final_problems: int | None = 512,
                 overrides: Sequence[str] = (), runs_root: str | Path = "runs", cache_dir: str | Path | None = None,
                 profile: str = "tiny", adaptive: bool | None = None, workers: int | None = None,
                 world: str = "arithmetic") -> list:
    """The compute study's runs (`fr3e.study.runs.ensure_runs`): GRPO++, FR3E and `compute_controls(adaptive)` ×
    models × seeds, each evaluated on `curve_problems` problems every `eval_every` steps and at the end, then
    its final model on `final_problems` (None: no extra evaluation). Returns the RunInfos."""
    from fr3e.study.launch import ensure_runs
    from fr3e.study.runs import DEFAULT_CACHE

    if eval_every < 1:
        raise ValueError(f"eval_every={eval_every}: the curves need an evaluation every few steps (e.g. 20)")
    return ensure_runs(_tiny_recipes(profile, world), models, seeds, steps=steps, runs_root=runs_root,
                       overrides=[*overrides, f"eval_every={eval_every}"], eval_n=eval_n, eval_problems=curve_problems,
                       cache_dir=cache_dir or DEFAULT_CACHE, controls=compute_controls(adaptive, world), workers=workers,
                       final_eval_problems=final_problems or None)


def ablation_runs(models: Sequence[str], seeds: Sequence[int], steps: int | None = None, eval_every: int = 10,
                  eval_n: int | None = 16, curve_problems: int = 64, final_problems: int | None = 512,
                  overrides: Sequence[str] = (), runs_root: str | Path = "runs", cache_dir: str | Path | None = None,
                  profile: str = "tiny", values: dict[str, Sequence] | None = None, workers: int | None = None,
                  world: str = "arithmetic") -> list:
    """The ablation runs: the FR3E recipe and one arm per factor value that differs from it (`ablation_controls`;
    values: factor name -> values to try, None: every value of `FACTORS`), evaluated like `compute_runs`."""
    from fr3e.study.launch import ensure_runs
    from fr3e.study.runs import DEFAULT_CACHE

    recipe = _tiny_recipes(profile, world)["fr3e"]
    return ensure_runs({"fr3e": recipe}, models, seeds, steps=steps, runs_root=runs_root,
                       overrides=[*overrides, f"eval_every={eval_every}"], eval_n=eval_n, eval_problems=curve_problems,
                       cache_dir=cache_dir or DEFAULT_CACHE, workers=workers,
                       controls=ablation_controls(recipe_defaults(recipe), values=values),
                       final_eval_problems=final_problems or None)


def final_evaluations(runs, final_problems: int | None) -> pd.DataFrame:
    """The evaluation the equal-steps verdicts use: `final_eval` on `final_problems` problems, or the run's own
    final evaluation when None."""
    from fr3e.study.loaders import load_final_eval, load_final_evals

    return load_final_eval(runs, final_problems) if final_problems else load_final_evals(runs)


def work_seconds(runs, final_problems: int | None) -> dict:
    """Seconds the study's runs took, read from their directories (so a re-run that reuses them still reports
    them): training with its curve evaluations (`DONE`'s wall) and the final evaluations (`final_eval`'s
    seconds), summed over runs, i.e. core-seconds with one thread per run. Warm starts are not included."""
    from fr3e.study.runs import final_eval_path
    from fr3e.training.runlog import RunDir

    train = final = 0.0
    for info in runs:
        done = RunDir(info.run_dir).done_file
        if done.exists():
            train += float(json.loads(done.read_text()).get("wall") or 0.0)
        path = final_eval_path(info.run_dir, final_problems) if final_problems else None
        if path is not None and path.exists():
            final += float(json.loads(path.read_text()).get("seconds") or 0.0)
    return {"train_s": train, "final_eval_s": final, "core_s": train + final, "runs": len(runs)}


def timing_note(estimate: dict, clock_seconds: float, work: dict) -> str:
    """The budget line of a study's README notes: the estimate, this notebook's time, and the work in its runs."""
    workers = max(1, int(estimate.get("workers") or 1))
    return (f"Estimated {estimate['wall_s'] / 60:.0f} min on {workers} workers before training; measured: "
            f"{clock_seconds / 60:.0f} min for this notebook; its {work['runs']} runs (trained now or reused) took "
            f"{work['core_s'] / 60:.0f} core-min of training and final evaluation, "
            f"≈ {work['core_s'] / workers / 60:.0f} min on {workers} workers (warm starts excluded).")


# ============================================================================================== curves


# ============================================================================================ verdicts
def verdict_rows(comparisons: pd.DataFrame, claim: str, paper: str, names: dict[str, str] | None = None,
                 what: str = "", direction: int = 1, digits: int = 1) -> list[dict]:
    """Claims-table rows (`fr3e.study.claims.COLUMNS` + `DETAIL_COLUMNS`) from `paired_at_equal_x` /
    `paired_final` rows: the verdict comes from the interval only. `claim` may use {arm}, {baseline}, {x}."""
    from fr3e.study.claims import interval_claim

    names = names or labels()
    rows = []
    for r in comparisons.itertuples():
        a, b = names.get(r.arm, r.arm), names.get(r.baseline, r.baseline)
        where = _fmt_x(r.x, r.at)
        text = claim.format(arm=a, baseline=b, x=X_AXES.get(r.x, r.x))
        ours = (f"{a} {r.arm_acc:.1f} vs {b} {r.baseline_acc:.1f} % at {where}{what}; {a} − {b}: {r.interval}")
        testable = getattr(r, "testable", True)
        rows.append(interval_claim(text, r.model, paper, ours, r.delta, r.ci_low, r.ci_high, direction,
                                   r.interval, digits,
                                   not_testable="" if testable is not False else r.interval.removeprefix(f"{NOT_TESTABLE}: ")))
    return rows


def _fmt_x(x: str, at: float) -> str:
    if x == "step":
        return f"step {at:.0f}"
    if x == "train_seconds":
        return f"{at:.0f} s of training"
    return f"{at / 1e6:.2f}M {X_AXES.get(x, x)}" if at >= 1e5 else f"{at:.0f} {X_AXES.get(x, x)}"




# ================================================================================================= cost


# ============================================================================================ ablations
def check_arms_branch(metrics: pd.DataFrame) -> None:
    """Refuse an FR3E arm whose runs found no anchor at all: it never branched, so comparing it with the recipe
    would compare FR3E with GRPO on base trajectories. Reads `anchors_per_trajectory` (logged every step)."""
    if "anchors_per_trajectory" not in metrics:
        return
    fr3e = metrics[metrics["method"] == "fr3e"] if "method" in metrics else metrics
    per_arm = fr3e.groupby("arm")["anchors_per_trajectory"].mean()
    dead = sorted(arm for arm, value in per_arm.items() if value == 0)  # nan (not logged) is not judged
    if dead:
        raise ValueError(f"study arm(s) {dead} found no anchor in any step (anchors_per_trajectory 0): they never "
                         "branched. Fix the scorer (for 'newline', fr3e.step_delimiter) and train them again.")


def ablation_table(final_evals: pd.DataFrame, curves_df: pd.DataFrame, metrics: pd.DataFrame, factor: Factor,
                   defaults: dict, warmup_steps: int | None = None) -> pd.DataFrame:
    """One row per value of `factor` (present in the runs): final accuracy (mean ± std over seeds, %),
    generated tokens per step, and recipe − value at equal steps (final evaluation) and at equal generated
    tokens (curves at the largest token count both arms reach), each with its 95% paired t-interval.

    final_evals: `load_final_eval` rows; curves_df: `curves`; metrics: `load_metrics`; defaults:
    `recipe_defaults`. The recipe's own value has no delta (it is the reference)."""
    default = defaults[factor.key]
    check_arms_branch(metrics)
    warmup = recipe_warmup_steps() if warmup_steps is None else warmup_steps
    acc = accuracy(final_evals)
    tokens = metrics.groupby(["arm", "seed"])["gen_tokens"].mean().groupby("arm").mean()
    rows = []
    for value in factor.values:
        arm = factor.arm(value, default)
        if arm not in set(acc["arm"]):
            continue
        m, s, n = mean_std(acc.loc[acc["arm"] == arm, "acc"].tolist())
        row = {"factor": factor.name, "value": value, "arm": arm, "recipe": value == default, "acc": m, "acc_std": s,
               "acc_text": fmt_mean_std(m, s), "seeds": n, "gen_tokens_per_step": float(tokens.get(arm, math.nan))}
        for label, comp in (("steps", paired_final(final_evals, "fr3e", arm) if arm != "fr3e" else None),
                            ("tokens", paired_at_equal_x(curves_df, "gen_tokens", "fr3e", arm, warmup_steps=warmup)
                             if arm != "fr3e" else None)):
            r = comp.iloc[0] if comp is not None and len(comp) else None
            row[f"delta_{label}"] = r["delta"] if r is not None else math.nan
            row[f"ci_low_{label}"] = r["ci_low"] if r is not None else math.nan
            row[f"ci_high_{label}"] = r["ci_high"] if r is not None else math.nan
            row[f"at_{label}"] = r["at"] if r is not None else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def ablation_claims(final_evals: pd.DataFrame, curves_df: pd.DataFrame, factor: Factor, defaults: dict,
                    names: dict[str, str] | None = None, warmup_steps: int | None = None) -> list[dict]:
    """Claims rows for one factor: "the recipe's value does at least as well as value v", at equal steps
    and at equal generated tokens, per value v ≠ the recipe's (estimate = recipe − v)."""
    default = defaults[factor.key]
    names = names or {}
    rows = []
    for value in factor.values:
        arm = factor.arm(value, default)
        if arm == "fr3e" or arm not in set(final_evals["arm"]):
            continue
        claim = f"{factor.name}={default} (recipe) ≥ {factor.name}={value}, at equal {{x}}"
        nm = {"fr3e": f"{factor.name}={default}", arm: f"{factor.name}={value}", **names}
        rows += verdict_rows(paired_final(final_evals, "fr3e", arm), claim, factor.question, nm,
                             " (final evaluation)")
        rows += verdict_rows(paired_at_equal_x(curves_df, "gen_tokens", "fr3e", arm,
                                               warmup_steps=recipe_warmup_steps() if warmup_steps is None else warmup_steps), claim, factor.question, nm,
                             " (curves)")
    return rows


def describe_comparison(row: dict | pd.Series, names: dict[str, str] | None = None) -> str:
    """"FR3E − GRPO++ +1.2 [−0.5, +2.9] at 1.37M generated tokens" for one comparison row."""
    names = names or labels()
    ci = (f" [{fmt_signed(row['ci_low'])}, {fmt_signed(row['ci_high'])}]"
          if np.isfinite(row["ci_low"]) else " (no interval)")
    return (f"{names.get(row['arm'], row['arm'])} − {names.get(row['baseline'], row['baseline'])} "
            f"{fmt_signed(row['delta'])}{ci} at {_fmt_x(row['x'], row['at'])}")


def ablation_panel(final_evals: pd.DataFrame, curves_df: pd.DataFrame, metrics: pd.DataFrame, factor: Factor,
                   defaults: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(`ablation_table`, its claims as a DataFrame with `fr3e.study.claims.COLUMNS` + `DETAIL_COLUMNS`) of one factor."""
    from fr3e.study.claims import COLUMNS, DETAIL_COLUMNS

    table = ablation_table(final_evals, curves_df, metrics, factor, defaults)
    claims = pd.DataFrame(ablation_claims(final_evals, curves_df, factor, defaults), columns=COLUMNS + DETAIL_COLUMNS)
    return table, claims


def factor(name: str) -> Factor:
    """The `FACTORS` entry called `name` ("K", "M", "scorer", "modulation")."""
    for f in FACTORS:
        if f.name == name:
            return f
    raise ValueError(f"unknown factor {name!r}; choose from {[f.name for f in FACTORS]}")


def ablation_readme(tables: pd.DataFrame) -> list[dict]:
    """results/README.md tables of the ablations: per factor, each value's accuracy, tokens per step and
    recipe − value at equal steps and at equal generated tokens with their intervals."""
    out = []
    for name, sub in tables.groupby("factor", sort=False):
        rows = []
        for r in sub.itertuples():
            rows.append({"value": f"{r.value}{' (recipe)' if r.recipe else ''}", "final avg@n %": r.acc_text,
                         "gen tokens / step": f"{r.gen_tokens_per_step / 1e3:.1f}k",
                         "recipe − value, equal steps": _ci_text(r.delta_steps, r.ci_low_steps, r.ci_high_steps),
                         "recipe − value, equal tokens": _ci_text(r.delta_tokens, r.ci_low_tokens, r.ci_high_tokens),
                         "seeds": r.seeds})
        f = factor(name)
        out.append({"title": f"**{name}** (`{f.key}`): {f.question}", "columns": list(rows[0]) if rows else [],
                    "rows": rows})
    return out


def _ci_text(delta: float, low: float, high: float) -> str:
    if delta is None or not np.isfinite(delta):
        return "–"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{fmt_signed(delta)} (no interval)"
    return f"{fmt_signed(delta)} [{fmt_signed(low)}, {fmt_signed(high)}]"


# ====================================================================================== compute study
def plan(arms: Sequence[str], models: Sequence[str], seeds: Sequence[int], steps: int | None,
         recipe: str | Path | None = None) -> list[tuple[str, int]]:
    """(arm, steps) of every run of a study, for `estimate_seconds` (steps None: the recipe's)."""
    if steps is None:
        from fr3e.study.runs import recipes
        from fr3e.training.config import load_config

        steps = load_config(recipe or recipes("tiny")["fr3e"]).steps
    return [(arm, steps) for arm in arms for _ in models for _ in seeds]


def ablation_costs(defaults: dict, values: dict[str, Sequence] | None = None, costs: Costs = Costs()) -> Costs:
    """`costs` with each ablation arm's relative step cost (`fr3e_relative_cost` for K and M; the recipe's
    FR3E cost for the scorer and the modulation, which change no amount of sampling)."""
    k0, m0 = defaults["fr3e.num_anchors"], defaults["fr3e.continuations_per_state"]
    base = dict(costs.relative)["fr3e"]
    rel = dict(costs.relative)
    for c in ablation_controls(defaults, values=values):
        key, value = c.overrides[0].split("=", 1)
        k = int(value) if key == "fr3e.num_anchors" else k0
        m = int(value) if key == "fr3e.continuations_per_state" else m0
        rel[c.arm] = fr3e_relative_cost(k, m, base, k0, m0)
    return dataclasses.replace(costs, relative=tuple(rel.items()))


def recipe_warmup_steps(recipe: str | Path | None = None) -> int:
    """The learning-rate warm-up of a recipe (default: the tiny FR3E recipe, which the studies train)."""
    from fr3e.training.config import load_config, recipe_dir

    return load_config(recipe or recipe_dir() / "tiny-fr3e.yaml").optim.warmup_steps


def compare_all(final_evals: pd.DataFrame, curves_df: pd.DataFrame,
                pairs: Sequence[tuple[str, str]] = COMPARISONS, warmup_steps: int | None = None) -> pd.DataFrame:
    """Every (arm, baseline) of `pairs` present in the runs, at equal steps (final evaluation) and at equal x of
    every other `X_AXES` column (curves): `COMPARISON_COLUMNS` rows. An equal-x read where a run is still in
    its learning-rate warm-up (`warmup_steps`, default: the tiny recipe's) is `not testable here`."""
    if warmup_steps is None:
        warmup_steps = recipe_warmup_steps()
    present = set(curves_df["arm"])
    frames = []
    for arm, baseline in pairs:
        if arm not in present or baseline not in present:
            continue
        frames.append(paired_final(final_evals, arm, baseline))
        for x in X_AXES:
            if x != "step":
                frames.append(paired_at_equal_x(curves_df, x, arm, baseline, warmup_steps=warmup_steps))
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COMPARISON_COLUMNS)


COMPUTE_CLAIM = "{arm} ≥ {baseline} at equal {x}"
COMPUTE_PAPER = ("Table 1 compares at equal steps only (FR3E samples ~164 generations per prompt against GRPO++'s "
                 "4); no published comparison holds compute equal")


def compute_claims(comparisons: pd.DataFrame, names: dict[str, str] | None = None) -> pd.DataFrame:
    """Claims rows (`fr3e.study.claims.COLUMNS` + `DETAIL_COLUMNS`) of `compare_all`: equal steps from the final
    evaluation, the other axes from the curves."""
    from fr3e.study.claims import COLUMNS, DETAIL_COLUMNS

    rows = []
    for r in comparisons.itertuples():
        one = pd.DataFrame([r._asdict()]).drop(columns="Index")
        what = " (final evaluation)" if r.x == "step" else " (curves)"
        rows += verdict_rows(one, COMPUTE_CLAIM, COMPUTE_PAPER, names, what)
    return pd.DataFrame(rows, columns=COLUMNS + DETAIL_COLUMNS)


def token_saving(metrics: pd.DataFrame, arm: str = "fr3e_adaptive", baseline: str = "fr3e") -> pd.DataFrame:
    """Generated tokens per step of `arm` against `baseline` per model: means over each run's steps, the
    saving 1 − arm / baseline in % per seed (paired), mean with its 95% t-interval. Empty without both arms.
    Where the metrics carry them: the share of `arm`'s states settled early (`states_settled_early` over its
    states, the groups of a step), the share of its continuation budget left unspent
    (`continuations_saved_frac`), and rollouts trained per step of both arms (nan when absent).
    Columns model, arm_tokens, baseline_tokens, saving, ci_low, ci_high, seeds, settled_share, unspent_share,
    arm_rollouts, baseline_rollouts."""
    m = metrics.copy()

    def col(name: str) -> pd.Series:
        return m[name] if name in m else pd.Series(np.nan, index=m.index)

    groups = col("groups_all_right") + col("groups_all_wrong") + col("groups_mixed")
    m["_settled"] = col("states_settled_early") / groups.where(groups > 0)
    m["_unspent"] = col("continuations_saved_frac")
    m["_rollouts"] = col("rollouts_trained")
    per_run = m.groupby(["model", "arm", "seed"])[["gen_tokens", "_settled", "_unspent", "_rollouts"]].mean()
    rows = []
    for model in dict.fromkeys(m["model"]):
        try:
            a, b = per_run.loc[(model, arm)], per_run.loc[(model, baseline)]
        except KeyError:
            continue
        seeds = sorted(set(a.index) & set(b.index))
        if not seeds:
            continue
        saving = [100.0 * (1 - a.loc[s, "gen_tokens"] / b.loc[s, "gen_tokens"]) for s in seeds]
        mean, lo, hi = paired_t_interval(saving)
        rows.append({"model": model, "arm_tokens": float(a.loc[seeds, "gen_tokens"].mean()),
                     "baseline_tokens": float(b.loc[seeds, "gen_tokens"].mean()), "saving": mean, "ci_low": lo,
                     "ci_high": hi, "seeds": len(seeds), "settled_share": float(a.loc[seeds, "_settled"].mean()),
                     "unspent_share": float(a.loc[seeds, "_unspent"].mean()),
                     "arm_rollouts": float(a.loc[seeds, "_rollouts"].mean()),
                     "baseline_rollouts": float(b.loc[seeds, "_rollouts"].mean())})
    return pd.DataFrame(rows, columns=["model", "arm_tokens", "baseline_tokens", "saving", "ci_low", "ci_high",
                                       "seeds", "settled_share", "unspent_share", "arm_rollouts",
                                       "baseline_rollouts"])


def _fmt(x: float, spec: str) -> str:
    """`spec.format(x)`, or "–" for a value not measured (nan)."""
    return "–" if not np.isfinite(x) else spec.format(x)


def compute_readme(comparisons: pd.DataFrame, phases: pd.DataFrame, prefill: pd.DataFrame, saving: pd.DataFrame,
                   names: dict[str, str] | None = None) -> list[dict]:
    """results/README.md tables of the compute study: accuracy of each arm at equal generated tokens, the
    adaptive budget's saving, step time by phase, prefill computed vs cached."""
    names = names or labels()
    tok = comparisons[comparisons["x"] == "gen_tokens"]
    out = [{"title": "Accuracy at equal generated tokens (avg@n over the splits, %, curves interpolated at the "
                     "largest token count both arms reach; mean over seeds):",
            "columns": ["model", "arm", "baseline", "at", "arm acc", "baseline acc", "arm − baseline [95% CI]", "seeds"],
            "rows": [{"model": r.model, "arm": names.get(r.arm, r.arm), "baseline": names.get(r.baseline, r.baseline),
                      "at": _fmt_x(r.x, r.at), "arm acc": f"{r.arm_acc:.1f}", "baseline acc": f"{r.baseline_acc:.1f}",
                      "arm − baseline [95% CI]": _ci_text(r.delta, r.ci_low, r.ci_high), "seeds": r.seeds}
                     for r in tok.itertuples()]}]
    if len(saving):
        out.append({"title": "The adaptive budget against FR3E: generated tokens per step and the saving (%, "
                             "paired over seeds); the share of states settled early, the share of the continuation "
                             "budget left unspent (0 when every freed continuation moves to an unsettled state), "
                             "and rollouts trained per step:",
                    "columns": ["model", "FR3E (adaptive) tokens / step", "FR3E tokens / step", "saving [95% CI]",
                                "states settled early", "budget unspent", "rollouts trained (adaptive / FR3E)",
                                "seeds"],
                    "rows": [{"model": r.model, "FR3E (adaptive) tokens / step": f"{r.arm_tokens / 1e3:.1f}k",
                              "FR3E tokens / step": f"{r.baseline_tokens / 1e3:.1f}k",
                              "saving [95% CI]": _ci_text(r.saving, r.ci_low, r.ci_high),
                              "states settled early": _fmt(100 * r.settled_share, "{:.0f}%"),
                              "budget unspent": _fmt(100 * r.unspent_share, "{:.0f}%"),
                              "rollouts trained (adaptive / FR3E)": f"{_fmt(r.arm_rollouts, '{:.0f}')} / "
                                                                    f"{_fmt(r.baseline_rollouts, '{:.0f}')}",
                              "seeds": r.seeds}
                             for r in saving.itertuples()]})
    cols = [c for c in PHASES if c in phases]
    out.append({"title": "Seconds per training step by phase (mean over steps and seeds):",
                "columns": ["model", "arm", *[c.removeprefix("time_") for c in cols], "step"],
                "rows": [{"model": r["model"], "arm": names.get(r["arm"], r["arm"]),
                          **{c.removeprefix("time_"): f"{r[c]:.2f}" for c in cols}, "step": f"{r['time_step']:.2f}"}
                         for _, r in phases.iterrows()]})
    out.append({"title": "Prefill tokens per step: submitted, computed, served from a prefix cache (the HF engine "
                         "computes a prompt once for all its samples; measured on steps not right after an "
                         "evaluation):",
                "columns": ["model", "arm", "generated", "prefill", "computed", "cached", "cached share"],
                "rows": [{"model": r.model, "arm": names.get(r.arm, r.arm), "generated": f"{r.gen_tokens / 1e3:.1f}k",
                          "prefill": f"{r.prefill_tokens / 1e3:.1f}k",
                          "computed": _fmt(r.prefill_computed_tokens / 1e3, "{:.1f}k"),
                          "cached": _fmt(r.prefill_cached_tokens / 1e3, "{:.1f}k"),
                          "cached share": _fmt(100 * r.cached_share, "{:.0f}%")}
                         for r in prefill.itertuples()]})
    return out
