"""fr3e.study.plots: every figure function returns a Figure whose panels have labelled axes and a legend."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from fr3e.study import plots  # noqa: E402
from fr3e.study import report as results

FIXTURE = Path(__file__).parent / "fixtures" / "runs" / "tiny"
RUN_DIRS = sorted(FIXTURE.iterdir())


@pytest.fixture(scope="module")
def metrics():
    return results.load_metrics(RUN_DIRS)


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _check(fig, n_panels):
    assert isinstance(fig, Figure)
    panels = _panels(fig)
    assert len(panels) == n_panels
    for ax in panels:
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
    has_legend = bool(fig.legends) or any(ax.get_legend() for ax in panels)
    assert has_legend
    return panels


def _legend_texts(fig):
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    return texts + [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def test_plot_entropy(metrics):
    fig = plots.plot_entropy(metrics, smooth=2)
    panels = _check(fig, 2)
    assert [ax.get_title() for ax in panels] == ["general (stands in for Qwen2.5-7B)", "math (stands in for Qwen2.5-Math-7B)"]
    assert "nats" in panels[0].get_ylabel()
    assert {"GRPO++", "FR3E"} <= set(_legend_texts(fig))
    # 2 methods on trained tokens + FR3E base trajectories = 3 lines per panel, with seed bands
    assert len(panels[0].lines) == 3 and len(panels[0].collections) == 3


def test_plot_response_length(metrics):
    panels = _check(plots.plot_response_length(metrics), 2)
    assert "tokens" in panels[0].get_ylabel()


def test_plot_advantages(metrics):
    panels = _check(plots.plot_advantages(metrics), 4)  # (hist, std) per model
    assert panels[0].get_xlabel().startswith("advantage")


def test_plot_composition(metrics):
    fig = plots.plot_composition(metrics, mixed=True)
    panels = _check(fig, 2)
    assert "%" in panels[0].get_ylabel()
    assert {"All-Right", "All-Wrong", "mixed"} <= set(_legend_texts(fig))
    top = max(line.get_ydata().max() for line in panels[0].lines)
    assert top <= 100.0


def test_plot_table1():
    final = results.load_final_evals(RUN_DIRS)
    fig = plots.plot_table1(results.table1_summary(final))
    panels = _check(fig, 2)
    assert "avg@n" in panels[0].get_ylabel()
    assert len(panels[0].patches) == 2 * 4  # 2 systems × (3 splits + avg)


def test_plot_walkthrough():
    sample = results.first_sample(FIXTURE / "fr3e-general-s0-4")
    fig = plots.plot_walkthrough(sample)
    panels = _check(fig, 3)
    assert "V(S_j)" in panels[1].get_ylabel() and "α" in panels[2].get_ylabel()
    cbar = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert cbar and "nats" in cbar[0].get_ylabel()
    red_boxes = [p for p in panels[0].patches if not p.get_fill()]
    assert len(red_boxes) == 3  # one box per anchor


def test_seed_band_mean_and_std():
    import pandas as pd

    df = pd.DataFrame({"seed": [0, 0, 1, 1], "step": [1, 2, 1, 2], "x": [1.0, 3.0, 3.0, 5.0]})
    band = plots.seed_band(df, "x")
    assert band["mean"].tolist() == [2.0, 4.0]
    assert band["std"].tolist() == pytest.approx([2 ** 0.5] * 2)
    smoothed = plots.seed_band(df, "x", smooth=2)  # seed 0: 1, 2; seed 1: 3, 4
    assert smoothed["mean"].tolist() == [2.0, 3.0]


def test_table1_figure_shows_the_control_rows():
    import pandas as pd

    from fr3e.study.plots import plot_table1

    rows = [{"model": "general", "system": s, "benchmark": b, "mean": 40.0 + i, "std": 1.0, "seeds": 3}
            for i, s in enumerate(("base", "GRPO++", "GRPO++ (matched rollouts)", "GRPO++ (coin reward)", "FR3E"))
            for b in ("easy", "avg")]
    fig = plot_table1(pd.DataFrame(rows))
    labels = [t.get_text() for t in fig.legends[0].get_texts()] if fig.legends else \
        [t.get_text() for ax in fig.axes for t in (ax.get_legend().get_texts() if ax.get_legend() else [])]
    assert "GRPO++ (matched rollouts)" in labels and "GRPO++ (coin reward)" in labels


def test_ablation_forest_plots_setting_minus_recipe_with_intervals():
    import numpy as np
    import pandas as pd

    table = pd.DataFrame({"factor": ["K", "K", "scorer"], "value": [1, 2, "random"], "recipe": [False, True, False],
                          "delta_steps": [1.0, np.nan, -0.5], "ci_low_steps": [0.2, np.nan, -1.0],
                          "ci_high_steps": [1.8, np.nan, 0.0], "delta_tokens": [2.0, np.nan, 0.0],
                          "ci_low_tokens": [np.nan, np.nan, -1.0], "ci_high_tokens": [np.nan, np.nan, 1.0]})
    fig = plots.plot_ablation_forest(table)
    left, right = fig.axes[:2]
    assert [t.get_text() for t in left.get_yticklabels()] == ["K=1", "scorer=random"]  # the recipe row is left out
    # recipe − setting is flipped: K=1 at −1.0 with its interval [−1.8, −0.2]
    points = left.lines[0].get_xdata() if left.lines else None
    assert points is not None and sorted(np.round(points, 3)) == [-1.0, 0.5]
    hollow = [ln for ln in right.lines if ln.get_markerfacecolor() == "none"]
    assert hollow and list(hollow[0].get_xdata()) == [-2.0]  # no interval at equal tokens: a hollow point
