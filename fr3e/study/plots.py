"""One function per paper figure; each takes DataFrames from `fr3e.study.report` and returns a matplotlib Figure.

Conventions for every training-curve figure: FR3E vs GRPO++ (fixed colours), one panel per base model,
x = training step, a line for the mean over seeds and a band for ± one std over seeds (no band with one
seed), optional trailing moving average over `smooth` steps (applied per seed, before averaging).

| function               | paper artefact | y                                             |
|------------------------|----------------|-----------------------------------------------|
| `plot_entropy`         | Fig. 3         | policy entropy, nats / token                  |
| `plot_response_length` | Fig. 4         | response length, tokens                       |
| `plot_advantages`      | Fig. 5         | advantage histogram (start vs end), std        |
| `plot_composition`     | Figs. 7-8      | share of All-Right / All-Wrong / mixed groups |
| `plot_table1`          | Table 1        | avg@n accuracy, %                             |
| `plot_walkthrough`     | Figs. 1-2      | tokens by entropy, anchors, V(S_j), α         |
| `plot_compute_curves`  | compute study  | accuracy vs steps / tokens / wall time        |
| `plot_phases`          | compute study  | seconds per step by phase, stacked            |
| `plot_ablation`        | ablations      | accuracy, tokens per step vs a factor's value |

Figures are created with pyplot and closed before being returned, so a notebook shows each once (as the
cell's value) and a script never accumulates open figures. No backend is forced here: tests select Agg.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from fr3e.study.runs import METHODS
from fr3e.study.tables import BENCHMARKS, LATE_FRACTION, METHOD_LABELS, STANDS_IN_FOR, composition_shares

COLORS = {"grpo_pp": "#4C72B0", "fr3e": "#C44E52", "base": "#9A9A9A",
          "GRPO++": "#4C72B0", "FR3E": "#C44E52",
          "GRPO++ (matched rollouts)": "#55A868", "GRPO++ (coin reward)": "#CCB974"}
TABLE1_SYSTEMS = ("base", "GRPO++ (coin reward)", "GRPO++", "GRPO++ (matched rollouts)", "FR3E")
PANEL_SIZE = (5.0, 3.6)


def model_title(model: str) -> str:
    """Panel title of a base model, e.g. "general (stands in for Qwen2.5-7B)"."""
    return f"{model} (stands in for {STANDS_IN_FOR[model]})" if model in STANDS_IN_FOR else model


def _models(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["model"]))


def _methods(df: pd.DataFrame) -> list[str]:
    present = set(df["method"])
    return [m for m in METHODS if m in present]


def _panels(n: int, nrows: int = 1, sharey: bool = True, size=PANEL_SIZE):
    fig, axes = plt.subplots(nrows, n, figsize=(size[0] * n, size[1] * nrows), sharey=sharey, squeeze=False)
    return fig, axes


def _finish(fig, handles=None, ncol: int = 4):
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False, fontsize="small",
                   bbox_to_anchor=(0.5, 0.0))
        fig.tight_layout(rect=(0, 0.08, 1, 1))
    else:
        fig.tight_layout()
    plt.close(fig)
    return fig


def seed_band(df: pd.DataFrame, col: str, smooth: int = 1) -> pd.DataFrame:
    """Per step: mean and std over seeds of `col` (after a per-seed trailing moving average of `smooth`).

    df: rows of one (model, method) with columns seed, step, col. Returns step, mean, std (nan for 1 seed).
    """
    parts = []
    for _, g in df.groupby("seed", sort=False):
        g = g.sort_values("step")
        y = g[col].astype(float)
        if smooth > 1:
            y = y.rolling(smooth, min_periods=1).mean()
        parts.append(pd.DataFrame({"step": g["step"].to_numpy(), "y": y.to_numpy()}))
    both = pd.concat(parts, ignore_index=True)
    out = both.groupby("step")["y"].agg(["mean", "std"]).reset_index()
    return out


def _curve(ax, df: pd.DataFrame, col: str, method: str, smooth: int, linestyle: str = "-", scale: float = 1.0):
    band = seed_band(df, col, smooth)
    x, y, s = band["step"], band["mean"] * scale, band["std"] * scale
    ax.plot(x, y, color=COLORS[method], linestyle=linestyle, lw=1.6)
    if s.notna().any():
        ax.fill_between(x, y - s, y + s, color=COLORS[method], alpha=0.18, lw=0)


def _method_handles(methods: Sequence[str]) -> list:
    return [Line2D([], [], color=COLORS[m], lw=2, label=METHOD_LABELS[m]) for m in methods]


def _style_handles(styles: dict[str, str]) -> list:
    return [Line2D([], [], color="black", lw=1.4, linestyle=ls, label=label) for label, ls in styles.items()]


def _seeds_note(df: pd.DataFrame) -> str:
    n = df.groupby(["model", "method"])["seed"].nunique().max()
    return f"mean ± std over {n} seeds" if n > 1 else "1 seed"


def _curves_figure(metrics: pd.DataFrame, series: dict[str, tuple[str, Sequence[str]]], ylabel: str, smooth: int,
                   scale: float = 1.0):
    """Panels per model; series: legend label -> (column, methods it is drawn for); styles by series order."""
    styles = ["-", "--", ":", "-."]
    models, methods = _models(metrics), _methods(metrics)
    fig, axes = _panels(len(models))
    style_of = {}
    for i, (label, (col, only)) in enumerate(series.items()):
        if col not in metrics:
            continue
        style_of[label] = styles[i % len(styles)]
        for ax, model in zip(axes[0], models):
            for method in methods:
                if method not in only:
                    continue
                sub = metrics[(metrics["model"] == model) & (metrics["method"] == method)]
                if len(sub) and sub[col].notna().any():
                    _curve(ax, sub, col, method, smooth, style_of[label], scale)
    for ax, model in zip(axes[0], models):
        ax.set_title(model_title(model), fontsize="medium")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    for ax in axes[0][1:]:
        ax.set_ylabel(ylabel)
    handles = _method_handles(methods) + (_style_handles(style_of) if len(style_of) > 1 else [])
    fig.suptitle(f"{_seeds_note(metrics)}" + (f", moving average over {smooth} steps" if smooth > 1 else ""),
                 fontsize="small", y=0.995)
    return _finish(fig, handles)


def plot_entropy(metrics: pd.DataFrame, smooth: int = 1, base: bool = True):
    """Fig. 3: mean policy entropy (nats / token) vs step. Solid: over the trained tokens (what verl logs);
    dashed (FR3E only, `base=True`): over the full base trajectories sampled from the prompt, the tokens
    directly comparable with GRPO++'s rollouts."""
    series = {"trained tokens": ("entropy", METHODS)}
    if base:
        series["FR3E base trajectories (from the prompt)"] = ("entropy_base", ("fr3e",))
    return _curves_figure(metrics, series, "policy entropy (nats / token)", smooth)


def plot_response_length(metrics: pd.DataFrame, smooth: int = 1):
    """Fig. 4: mean response length (tokens) vs step. Solid: trained rollouts, prefix ⊕ continuation (the
    full response, comparable across methods); dashed (FR3E, when logged as `continuation_length`): the
    generated continuation only."""
    series = {"full response (prefix + continuation)": ("response_length", METHODS),
              "FR3E continuation only": ("continuation_length", ("fr3e",))}
    return _curves_figure(metrics, series, "response length (tokens)", smooth)


def _hist_density(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    counts = np.sum(np.stack([np.asarray(h, dtype=float) for h in rows["adv_hist"]]), axis=0)  # (40,)
    edges = np.asarray(rows["adv_hist_edges"].iloc[0], dtype=float)  # (41,)
    total = counts.sum()
    density = counts / (total * np.diff(edges)) if total > 0 else counts
    return edges, density


def _phase_rows(df: pd.DataFrame, phase: str, frac: float) -> pd.DataFrame:
    parts = []
    for _, g in df.groupby("seed", sort=False):
        g = g.sort_values("step")
        k = max(1, int(round(frac * len(g))))
        parts.append(g.tail(k) if phase == "late" else g.head(k))
    return pd.concat(parts)


def plot_advantages(metrics: pd.DataFrame, frac: float = LATE_FRACTION, smooth: int = 1):
    """Fig. 5: per model, left: histogram of the advantages A of the trained tokens' rollouts over the first
    (dashed) and last (solid) `frac` of steps, per method (density, all seeds pooled); right: advantage std
    vs step (mean ± std over seeds)."""
    models, methods = _models(metrics), _methods(metrics)
    fig, axes = plt.subplots(len(models), 2, figsize=(2 * PANEL_SIZE[0], PANEL_SIZE[1] * len(models)), squeeze=False)
    for row, model in enumerate(models):
        ax_h, ax_s = axes[row]
        for method in methods:
            sub = metrics[(metrics["model"] == model) & (metrics["method"] == method)]
            if sub.empty:
                continue
            for phase, ls in (("early", "--"), ("late", "-")):
                edges, density = _hist_density(_phase_rows(sub, phase, frac))
                ax_h.stairs(density, edges, color=COLORS[method], linestyle=ls, lw=1.5)
            _curve(ax_s, sub, "adv_std", method, smooth)
        ax_h.set_title(f"{model_title(model)}: advantage distribution", fontsize="medium")
        ax_h.set_xlabel("advantage A = α·Â (reward units)")
        ax_h.set_ylabel("density (per unit of A)")
        ax_h.set_yscale("symlog", linthresh=0.1)
        ax_s.set_title(f"{model_title(model)}: spread", fontsize="medium")
        ax_s.set_xlabel("training step")
        ax_s.set_ylabel("advantage std (reward units)")
        for ax in (ax_h, ax_s):
            ax.grid(alpha=0.3)
    pct = int(round(100 * frac))
    handles = _method_handles(methods) + _style_handles({f"first {pct}% of steps": "--", f"last {pct}% of steps": "-"})
    fig.suptitle(_seeds_note(metrics), fontsize="small", y=0.995)
    return _finish(fig, handles)


def plot_composition(metrics: pd.DataFrame, level: str = "prompts", smooth: int = 1, mixed: bool = False):
    """Figs. 7-8: share (%) of All-Right (solid) and All-Wrong (dashed) groups vs step, per method.

    level: "prompts" (the S_0 / prompt groups, comparable across methods) or "groups" (all state groups).
    mixed: also draw the mixed share (dotted).
    """
    shares = composition_shares(metrics, level)
    series = {"All-Right": ("all_right", METHODS), "All-Wrong": ("all_wrong", METHODS)}
    if mixed:
        series["mixed"] = ("mixed", METHODS)
    what = "prompt (S_0) groups" if level == "prompts" else "state groups"
    return _curves_figure(shares, series, f"share of {what} (%)", smooth, scale=100.0)


def plot_table1(summary: pd.DataFrame):
    """Table 1 as bars: per model, avg@n (%) per benchmark and their average for base, the GRPO++ controls
    (coin reward, matched rollouts) where present, GRPO++ and FR3E; error bars ± std over seeds.
    summary: `fr3e.study.report.table1_summary`."""
    models = _models(summary)
    systems = [s for s in TABLE1_SYSTEMS if s in set(summary["system"])]
    benches = [b for b in (*BENCHMARKS, "avg") if b in set(summary["benchmark"])]
    fig, axes = _panels(len(models), size=(5.5, 3.8))
    width = 0.8 / max(1, len(systems))
    for ax, model in zip(axes[0], models):
        sub = summary[summary["model"] == model]
        for i, system in enumerate(systems):
            s = sub[sub["system"] == system].set_index("benchmark").reindex(benches)
            x = np.arange(len(benches)) + (i - (len(systems) - 1) / 2) * width
            err = s["std"].to_numpy() if s["std"].notna().any() else None  # no bars with one seed
            ax.bar(x, s["mean"].to_numpy(), width, yerr=None if err is None else np.nan_to_num(err),
                   color=COLORS[system], capsize=2, error_kw={"lw": 0.8}, label=system)
        ax.set_xticks(np.arange(len(benches)))
        ax.set_xticklabels([f"{b}\n({STANDS_IN_FOR[b]})" if b in STANDS_IN_FOR else b for b in benches],
                           fontsize="small")
        ax.set_title(model_title(model), fontsize="medium")
        ax.set_xlabel("benchmark (tiny split)")
        ax.set_ylabel("avg@n accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
    handles = [Patch(color=COLORS[s], label=s) for s in systems]
    n = int(summary["seeds"].max()) if len(summary) else 0
    fig.suptitle(f"final evaluation; error bars ± std over {n} seeds" if n > 1 else "final evaluation, 1 seed",
                 fontsize="small", y=0.995)
    return _finish(fig, handles)


def _token_glyph(token: str) -> str:
    if token == "\n":
        return "⏎"
    if token.startswith("<") and token.endswith(">") and len(token) > 2:
        return "■"  # special token (EOS)
    return token if len(token) <= 2 else token[:2]


def plot_walkthrough(sample: dict, trajectory_id: int | None = None, cmap: str = "viridis"):
    """Figs. 1-2 on one trajectory of a samples.jsonl row (or `fr3e.study.report.walkthrough`):
    top: response tokens coloured by entropy (nats), anchors boxed in red and numbered; bottom left:
    V(S_j) with Wilson 95% intervals; bottom right: α_j of the paper and official variants."""
    trajs = sample["trajectories"]
    traj = trajs[0] if trajectory_id is None else next(t for t in trajs if t["trajectory_id"] == trajectory_id)
    tid = traj["trajectory_id"]
    states = sorted((s for s in sample["states"] if s["key"][1] in (-1, tid)), key=lambda s: s["key"][2])
    tokens, entropy, anchors = traj["tokens"], np.asarray(traj["entropy"], dtype=float), list(traj["anchors"])

    fig = plt.figure(figsize=(11, 7.2))
    grid = fig.add_gridspec(2, 2, height_ratios=[1.25, 1.0])
    ax_t = fig.add_subplot(grid[0, :])
    ax_v = fig.add_subplot(grid[1, 0])
    ax_a = fig.add_subplot(grid[1, 1])

    # Tokens laid out like the text: a new line after each newline token, wrapped at 48 columns.
    line_lengths = [len(line) + 1 for line in "".join("\n" if t == "\n" else "x" for t in tokens).split("\n")]
    width = max(12, min(48, max(line_lengths)))
    norm = Normalize(vmin=0.0, vmax=max(float(entropy.max()) if entropy.size else 1.0, 1e-6))
    colours = plt.get_cmap(cmap)
    row, col, rows_used = 0, 0, 1
    for t, token in enumerate(tokens):
        if col >= width:
            row, col = row + 1, 0
        h = entropy[t] if t < entropy.size else 0.0
        ax_t.add_patch(Rectangle((col, -row - 1), 1, 1, facecolor=colours(norm(h)), edgecolor="white", lw=0.3))
        ax_t.text(col + 0.5, -row - 0.5, _token_glyph(token), ha="center", va="center", fontsize=8 if width > 30 else 11,
                  family="monospace", color="white" if norm(h) < 0.6 else "black")
        if t in anchors:
            j = anchors.index(t) + 1
            ax_t.add_patch(Rectangle((col, -row - 1), 1, 1, fill=False, edgecolor="red", lw=2.0))
            ax_t.text(col + 0.5, -row + 0.05, f"a{j}", ha="center", va="bottom", fontsize=7, color="red")
        col += 1
        if token == "\n":
            row, col = row + 1, 0
        rows_used = row + 1
    ax_t.set_xlim(0, width)
    ax_t.set_ylim(-rows_used - 0.2, 0.8)
    ax_t.set_xticks([])
    ax_t.set_yticks([])
    ax_t.set_xlabel("response tokens in reading order (⏎ = newline, ■ = EOS); red boxes: anchors a_j")
    ax_t.set_ylabel("response line")
    prompt = sample["prompt"].strip().replace("\n", " ")
    ax_t.set_title(f"prompt {prompt!r}, answer {sample['answer']}, base reward {traj.get('reward', math.nan):.0f}",
                   fontsize="medium")
    cbar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=colours), ax=ax_t, fraction=0.03, pad=0.01)
    cbar.set_label("entropy H_t (nats)")

    # V(S_j) with Wilson intervals.
    j = np.arange(len(states))
    values = np.array([s["value"] for s in states])
    lo = np.array([s["value_ci"][0] for s in states])
    hi = np.array([s["value_ci"][1] for s in states])
    m = len(states[0]["rewards"]) if states else 0
    ax_v.errorbar(j, values, yerr=[values - lo, hi - values], fmt="o-", color="black", capsize=3,
                  label=f"V(S_j), Wilson 95% (M = {m})")
    ax_v.set_xticks(j)
    ax_v.set_xticklabels([f"S_{s['key'][2]}\n@{s['anchor']}" for s in states], fontsize="small")
    ax_v.set_ylim(-0.05, 1.05)
    ax_v.set_xlabel("state S_j (@ anchor position in the response)")
    ax_v.set_ylabel("state value V(S_j) (mean reward)")
    ax_v.legend(fontsize="small", frameon=False, loc="best")
    ax_v.grid(alpha=0.3)

    # α for both variants.
    w = 0.38
    for k, (variant, colour) in enumerate((("paper", COLORS["fr3e"]), ("official", "#DD8452"))):
        a = [s["alpha"][variant] for s in states]
        ax_a.bar(j + (k - 0.5) * w, a, w, color=colour, label=f"α ({variant})")
    ax_a.axhline(1.0, color="black", lw=0.8, linestyle=":")
    ax_a.set_xticks(j)
    ax_a.set_xticklabels([f"S_{s['key'][2]}" for s in states], fontsize="small")
    ax_a.set_xlabel("state S_j")
    ax_a.set_ylabel("modulation factor α_j (1 = unchanged)")
    ax_a.legend(fontsize="small", frameon=False, loc="best")
    ax_a.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig


# ================================================================================ compute and ablations
STUDY_COLORS = {"grpo_pp": "#4C72B0", "grpo_pp_matched": "#55A868", "grpo_pp_entbonus": "#64B5CD",
                "grpo_pp_top20": "#937860", "fr3e": "#C44E52", "fr3e_adaptive": "#8172B2"}
"""Arm colours of the compute study (Table 1's for the arms it shares)."""


def plot_compute_curves(mean_curves: dict[str, pd.DataFrame], comparisons: pd.DataFrame | None = None,
                        names: dict[str, str] | None = None):
    """Accuracy against each x axis (columns) per base model (rows): mean over seeds with ± std band.

    mean_curves: x column -> `fr3e.study.curves.mean_curve` of that x; comparisons: `paired_at_equal_x` rows whose
    `at` is marked with a dotted line (the x where the verdicts are read); names: arm -> label."""
    from fr3e.study.curves import X_AXES

    names = names or METHOD_LABELS
    axes_x = list(mean_curves)
    first = next(iter(mean_curves.values()))
    models = _models(first)
    fig, axes = plt.subplots(len(models), len(axes_x), figsize=(4.2 * len(axes_x), 3.3 * len(models)), squeeze=False,
                             sharey="row")
    arms = [a for a in STUDY_COLORS if a in set(first["arm"])] + sorted(set(first["arm"]) - set(STUDY_COLORS))
    for i, model in enumerate(models):
        for j, x in enumerate(axes_x):
            ax = axes[i][j]
            df = mean_curves[x]
            for arm in arms:
                g = df[(df["model"] == model) & (df["arm"] == arm)]
                if g.empty:
                    continue
                color = STUDY_COLORS.get(arm)
                ax.plot(g["x"], g["mean"], color=color, lw=1.6)
                if g["std"].notna().any():
                    ax.fill_between(g["x"], g["mean"] - g["std"], g["mean"] + g["std"], color=color, alpha=0.15, lw=0)
            if comparisons is not None and len(comparisons):
                for at in set(comparisons.loc[(comparisons["model"] == model) & (comparisons["x"] == x), "at"]):
                    ax.axvline(at, color="black", lw=0.8, ls=":")
            ax.set_xlabel(X_AXES.get(x, x))
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel(f"{model_title(model)}\navg@n, mean over splits (%)", fontsize="small")
    handles = [Line2D([], [], color=STUDY_COLORS.get(a), lw=2, label=names.get(a, a)) for a in arms]
    handles.append(Line2D([], [], color="black", lw=0.8, ls=":", label="x where the verdict is read"))
    n = int(first["seeds"].max()) if len(first) else 0
    fig.suptitle(f"periodic evaluations, mean ± std over {n} seeds" if n > 1 else "periodic evaluations, 1 seed",
                 fontsize="small", y=0.995)
    return _finish(fig, handles, ncol=len(handles))


PHASE_COLORS = {"time_generate": "#4C72B0", "time_score": "#DD8452", "time_forward": "#55A868",
                "time_backward": "#C44E52", "time_other": "#8C8C8C"}


def plot_phases(phases: pd.DataFrame, names: dict[str, str] | None = None):
    """Seconds per step split by phase (generate / score / forward / backward / other), a stacked bar per arm,
    one panel per base model. phases: `fr3e.study.costs.phase_seconds`."""
    names = names or METHOD_LABELS
    models = _models(phases)
    fig, axes = _panels(len(models), size=(5.0, 3.6))
    cols = [c for c in PHASE_COLORS if c in phases]
    for ax, model in zip(axes[0], models):
        sub = phases[phases["model"] == model]
        arms = [a for a in STUDY_COLORS if a in set(sub["arm"])] + sorted(set(sub["arm"]) - set(STUDY_COLORS))
        sub = sub.set_index("arm").loc[arms]
        bottom = np.zeros(len(arms))
        for c in cols:
            ax.bar(np.arange(len(arms)), sub[c].to_numpy(), 0.6, bottom=bottom, color=PHASE_COLORS[c])
            bottom += sub[c].to_numpy()
        ax.set_xticks(np.arange(len(arms)))
        ax.set_xticklabels([names.get(a, a).replace(" (", "\n(") for a in arms], fontsize="small")
        ax.set_title(model_title(model), fontsize="medium")
        ax.set_ylabel("seconds per training step")
        ax.grid(axis="y", alpha=0.3)
    handles = [Patch(color=PHASE_COLORS[c], label=c.removeprefix("time_")) for c in cols]
    return _finish(fig, handles, ncol=len(handles))


def plot_ablation(table: pd.DataFrame):
    """One row per factor: final accuracy (mean ± std over seeds) and generated tokens per step against the
    factor's value; the recipe's value is the red bar. table: `fr3e.study.studies.ablation_table` rows (one or more
    factors)."""
    factors = list(dict.fromkeys(table["factor"]))
    fig, axes = plt.subplots(len(factors), 2, figsize=(9.0, 3.0 * len(factors)), squeeze=False)
    for i, factor in enumerate(factors):
        sub = table[table["factor"] == factor]
        x = np.arange(len(sub))
        colors = [COLORS["fr3e"] if r else "#9A9A9A" for r in sub["recipe"]]
        err = np.nan_to_num(sub["acc_std"].to_numpy()) if sub["acc_std"].notna().any() else None
        axes[i][0].bar(x, sub["acc"], 0.6, yerr=err, color=colors, capsize=3, error_kw={"lw": 0.8})
        axes[i][0].set_ylabel("final avg@n (%)")
        axes[i][1].bar(x, sub["gen_tokens_per_step"] / 1e3, 0.6, color=colors)
        axes[i][1].set_ylabel("generated tokens / step (k)")
        for ax in axes[i]:
            ax.set_xticks(x)
            ax.set_xticklabels([str(v) for v in sub["value"]])
            ax.set_xlabel(factor)
            ax.grid(axis="y", alpha=0.3)
    n = int(table["seeds"].max()) if len(table) else 0
    fig.suptitle("red: the recipe's value; " + (f"error bars ± std over {n} seeds" if n > 1 else "1 seed"),
                 fontsize="small", y=0.995)
    return _finish(fig)


def plot_ablation_forest(table: pd.DataFrame):
    """Forest plot of the ablations: (setting − recipe) final avg@n in points with its 95% paired interval, one row
    per setting, at equal steps (left) and at equal generated tokens (right); 0 is the recipe. Bars from 0 would
    hide one-point differences; intervals show them with their uncertainty. A setting with no interval (one
    seed, or a read the rules call not testable) is drawn as a hollow point. table: `ablation_table` rows (the
    recipe's own rows, which have no delta, are left out); their `delta_*` are recipe − setting, flipped here."""
    rows = table[~table["recipe"].astype(bool)].reset_index(drop=True)
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 0.45 * max(len(rows), 3) + 1.2), sharey=True, squeeze=False)
    y = np.arange(len(rows))[::-1]
    labels = [f"{r.factor}={r.value}" for r in rows.itertuples()]
    for ax, key, title in ((axes[0][0], "steps", "at equal steps (final evaluation)"),
                           (axes[0][1], "tokens", "at equal generated tokens")):
        est = -rows[f"delta_{key}"].to_numpy(dtype=float)
        lo, hi = -rows[f"ci_high_{key}"].to_numpy(dtype=float), -rows[f"ci_low_{key}"].to_numpy(dtype=float)
        have = np.isfinite(lo) & np.isfinite(hi)
        ax.errorbar(est[have], y[have], xerr=[est[have] - lo[have], hi[have] - est[have]], fmt="o",
                    color=COLORS["fr3e"], capsize=3, lw=1.0)
        ax.plot(est[~have], y[~have], "o", mfc="none", color="#555555")
        ax.axvline(0.0, color="#333333", lw=0.8)
        ax.set_title(title, fontsize="small")
        ax.set_xlabel("setting − recipe, avg@n (points)")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(y)
    axes[0][0].set_yticklabels(labels)
    fig.suptitle("ablations: 95% paired t-intervals over seeds; hollow: no interval", fontsize="small", y=0.995)
    return _finish(fig)
