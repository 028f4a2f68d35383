"""Artefacts: what a notebook writes into `results/<artefact>/` (data.csv, summary.json, figure.png,
provenance.json, atomically) and `results/README.md`, written from those summaries.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import platform
import re
import time
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path

import pandas as pd

from fr3e.study.claims import FAMILY_ALPHA, claim_role, holm_family, with_numbers
from fr3e.study.runs import REPO_ROOT, RunInfo, archived_run, run_dirs
from fr3e.study.stats import fmt_verdict, verdict
from fr3e.study.tables import (
    HALF_WIDTH_TARGET,
    METHOD_LABELS,
    STATISTICS,
    _jsonable,
)
from fr3e.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

class Clock:
    """Wall time since construction (a notebook starts one in its first cell)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 1)


def git_sha(root: str | Path = REPO_ROOT) -> str:
    """HEAD's commit, with "-dirty" when the working tree has changes; "unknown" outside git."""
    from fr3e.training.runlog import git_sha as run_git_sha

    return run_git_sha(root) or "unknown"


def package_versions(names: Sequence[str] = ("fr3e", "torch", "transformers", "accelerate", "numpy", "pandas",
                                            "matplotlib", "papermill")) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(runs: Iterable[RunInfo | str | Path] = (), profile: str = "tiny", clock: Clock | None = None,
               parameters: dict | None = None, **extra) -> dict:
    """What produced an artefact: run dirs, git sha, profile, wall time, package versions, parameters."""
    record = {
        "run_dirs": [str(d) for d in run_dirs(runs)],
        "git_sha": git_sha(),
        "profile": profile,
        "wall_seconds": clock.seconds if clock else None,
        "started_at": clock.started_at if clock else None,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "packages": package_versions(),
        "parameters": parameters or {},
    }
    record.update(extra)
    return record


def figure_png(figure, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes (dpi capped at 110 to keep committed results small)."""
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=min(dpi, 110), bbox_inches="tight")
    return buf.getvalue()


def write_artefact(out_dir: str | Path, data: pd.DataFrame, summary: dict, figure, provenance: dict,
                   dpi: int = 100, figures: dict | None = None) -> Path:
    """Write data.csv, summary.json, figure.png (dpi ≤ 110) and provenance.json into `out_dir`, atomically.

    `summary` may hold DataFrames (written as lists of records); `figures`: more figures, name -> figure,
    written as `<name>.png`. Returns `out_dir`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "data.csv", data.to_csv(index=not isinstance(data.index, pd.RangeIndex)))
    atomic_write_json(out_dir / "summary.json", _jsonable(summary))
    atomic_write_bytes(out_dir / "figure.png", figure_png(figure, dpi))
    for name, extra in (figures or {}).items():
        atomic_write_bytes(out_dir / f"{name}.png", figure_png(extra, dpi))
    atomic_write_json(out_dir / "provenance.json", _jsonable(provenance))
    logger.info("artefact written to %s", out_dir)
    return out_dir


def add_figure(out_dir: str | Path, name: str, figure, source: str, dpi: int = 100) -> Path:
    """Add `<name>.png` to a written artefact, drawn later from its committed files only (`source` says from
    which and by what), and record it in its provenance.json with the commit that drew it."""
    out_dir = Path(out_dir)
    path = out_dir / f"{name}.png"
    atomic_write_bytes(path, figure_png(figure, dpi))
    record = json.loads((out_dir / "provenance.json").read_text())
    record.setdefault("figures_added", {})[path.name] = {"git_sha": git_sha(), "source": source}
    atomic_write_json(out_dir / "provenance.json", _jsonable(record))
    return path


# ======================================================================================== run archive
ARCHIVED_FILES = ("config.json", "env.json", "eval.jsonl", "probe.jsonl", "final_eval-p*.json", "DONE")
"""What a run's archive keeps as it is; metrics.jsonl is kept gzipped (`metrics.jsonl.gz`, read by `read_jsonl`)."""


def archive_runs(run_dirs: Sequence[str | Path], results_dir: str | Path) -> list[Path]:
    """Copy the logs of finished runs into `<results_dir>/runs/` (atomic per file; an archive already complete is
    rewritten only when the run's files changed). Returns the archive folders."""
    import gzip

    out = []
    for run_dir in map(Path, run_dirs):
        if not (run_dir / "config.json").exists():
            raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json): nothing to archive")
        dest = archived_run(results_dir, run_dir)
        dest.mkdir(parents=True, exist_ok=True)
        for pattern in ARCHIVED_FILES:
            for src in sorted(run_dir.glob(pattern)):
                atomic_write_bytes(dest / src.name, src.read_bytes())
        metrics = run_dir / "metrics.jsonl"
        if metrics.exists():  # mtime 0: the same log always gives the same bytes
            atomic_write_bytes(dest / "metrics.jsonl.gz", gzip.compress(metrics.read_bytes(), mtime=0))
        out.append(dest)
    # The base models' evaluations of the runs' folders (Table 1's base rows, the curves' step 0), so a notebook
    # opened on committed results (`source='committed'`) needs no model.
    for folder in sorted({Path(d).parent for d in run_dirs}):
        for src in sorted(folder.glob("base-*.json")):
            dest = archived_run(results_dir, folder / "x").parent / src.name
            atomic_write_bytes(dest, src.read_bytes())
    return out


# ====================================================================================== results README
ARTEFACT_TITLES = {
    "walkthrough": "Method walkthrough (Fig. 1 made concrete)",
    "table1": "Table 1: accuracy per base model",
    "entropy": "Entropy dynamics (Fig. 3)",
    "length": "Response length (Fig. 4)",
    "advantage": "Advantage distribution (Fig. 5)",
    "all_right": "All-Right / All-Wrong composition (Figs. 7-8)",
    "compute": "What FR3E buys per token: accuracy at equal steps, tokens and wall time (`make reproduce-compute`)",
    "ablations": "Ablations: K, M, scorer, modulation (`make reproduce-ablations`)",
}


def _md_table(rows: list[dict], columns: Sequence[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |\n" for r in rows)


def results_readme(results_dir: str | Path) -> str:
    """`results/README.md` from the artefacts' summary.json files: claims, what we measured, the verdicts.

    Written from the files alone (no numbers typed by hand), so it always matches the committed results.
    """
    results_dir = Path(results_dir)
    record = {}
    if (results_dir / "reproduce.json").exists():
        record = json.loads((results_dir / "reproduce.json").read_text())
    total = record.get("total_seconds")
    world = record.get("world") or _artefact_world(results_dir)
    lines = [f"# Results of the tiny-profile reproduction: the {world} world", "",
             "Written by `make reproduce` (`python -m fr3e.cli.reproduce`) from the `summary.json` of each artefact; "
             "every number comes from the runs named in that folder's `provenance.json`, whose configs and "
             "environments sit in the run directories. The tiny profile is a CPU miniature of the paper's "
             f"pipeline ({WORLD_TEXT.get(world, world)}, a model under 1M parameters): its numbers test the "
             "mechanics and the direction of each claim, not the paper's magnitudes.", ""]
    if record:
        lines += [f"Profile `{record.get('profile')}` ({record.get('profile_reason')}), git `{record.get('git_sha')}`, "
                  f"total wall time {total:.0f} s." if total else "", ""]
    lines += _control_readme(results_dir)
    lines += [f"Statistics: {STATISTICS}", ""]
    summaries = {name: json.loads(path.read_text()) for name in ARTEFACT_TITLES
                 if (path := results_dir / name / "summary.json").exists()}
    claims = {name: [{**rederive_verdict(c), "role": claim_role(c["claim"])} for c in s.get("claims") or []]
              for name, s in summaries.items()}
    lines += _primary_readme(summaries, claims)
    for artefact, summary in summaries.items():
        title = ARTEFACT_TITLES[artefact]
        prov_path = results_dir / artefact / "provenance.json"
        sha = json.loads(prov_path.read_text()).get("git_sha") if prov_path.exists() else None
        lines += [f"## {title}", "", f"Folder `{artefact}/`: `figure.png`, `data.csv`, `summary.json`, "
                  "`provenance.json` and the executed notebook" + (f"; written at git `{sha}`" if sha else "") + ".",
                  ""]
        if artefact == "table1" and summary.get("table"):
            cols = [c for c in ("model", "system", "easy", "medium", "hard", "avg", "seeds") if c in summary["table"][0]]
            lines += ["avg@16 in % (mean ± std over seeds):", "", _md_table(summary["table"], cols)]
            for key, what in (("table_pass", f"pass@{summary.get('pass_n', 16)}"), ("table_greedy", "greedy accuracy")):
                if summary.get(key):
                    lines += [f"{what} in % (mean ± std over seeds; the same runs and problems):", "",
                              _md_table(summary[key], cols)]
            lines += _table1_readme(summary)
        for table in summary.get("readme_tables") or []:  # the studies' key numbers (fr3e.study.studies)
            lines += [table["title"], ""] + ([_md_table(table["rows"], table["columns"])] if table["rows"] else [])
        for note in summary.get("readme_notes") or []:
            lines += [note, ""]
        if summary.get("claims_recomputed"):
            lines += [f"Claims {summary['claims_recomputed']}.", ""]
        if claims[artefact]:
            lines += [_md_table(claims[artefact], ["claim", "model", "paper", "ours", "verdict", "role"])]
    return "\n".join(lines).rstrip() + "\n"


WORLD_TEXT = {
    "arithmetic": "generated arithmetic with one worked solution per problem, so a response has no real forks",
    "paths": "paths in a fixed 48-node digraph, many correct paths per problem and free length",
}
"""How the README header describes each tiny world."""


def _artefact_world(results_dir: Path) -> str:
    """The tiny world the artefacts in `results_dir` were made on, from the parameters their notebooks received
    (a study run alone writes no reproduce.json); results from before the path world existed are arithmetic."""
    for prov in sorted(results_dir.glob("*/provenance.json")):
        params = json.loads(prov.read_text()).get("injected_parameters") or {}
        if params.get("world"):
            return params["world"]
    return "arithmetic"


def _control_readme(results_dir: Path) -> list[str]:
    """A section on each control world reproduced into a subfolder (`results/<world>/`, e.g. arithmetic): its Table 1
    and its commit, linking to its own README for every verdict."""
    lines: list[str] = []
    for sub in sorted(p for p in results_dir.iterdir() if p.is_dir() and (p / "README.md").exists()):
        record_path = sub / "reproduce.json"
        record = json.loads(record_path.read_text()) if record_path.exists() else {}
        world = record.get("world", sub.name)
        lines += [f"## Control: the {world} world", "",
                  f"`{sub.name}/` holds the same reproduction on the {world} world ({WORLD_TEXT.get(world, world)}), "
                  f"git `{record.get('git_sha', '?')}`; `{sub.name}/README.md` gives every verdict there. Where a "
                  "response has nothing to branch on, FR3E has nothing to find: that is a finding, kept as a control.",
                  ""]
        table1 = sub / "table1" / "summary.json"
        if table1.exists():
            table = json.loads(table1.read_text()).get("table") or []
            cols = [c for c in ("model", "system", "easy", "medium", "hard", "avg", "seeds") if table and c in table[0]]
            if table:
                lines += [f"Table 1 on the {world} world, avg@16 in % (mean ± std over seeds):", "",
                          _md_table(table, cols)]
    return lines


def rederive_verdict(row: dict) -> dict:
    """A stored claims row whose verdict the current rules read differently from its stored numbers (estimate,
    interval, direction) gets the current verdict text; e.g. an interval without width became `not testable
    here`. Rows without an interval are kept as stored."""
    row = with_numbers(row)
    est, lo, hi, direction = (row.get(k) for k in ("estimate", "ci_low", "ci_high", "direction"))
    if any(v is None or (isinstance(v, float) and not math.isfinite(v)) for v in (est, lo, hi, direction)):
        return row
    now = verdict(lo, hi, int(direction))
    if str(row.get("verdict", "")).startswith(now):
        return row
    m = re.search(r"\(([+−-]?\d+)(?:\.(\d+))?", str(row.get("verdict", "")))
    digits = len(m.group(2)) if m and m.group(2) else 1
    return {**row, "verdict": fmt_verdict(est, lo, hi, int(direction), digits)}


def _primary_readme(summaries: dict[str, dict], claims: dict[str, list[dict]]) -> list[str]:
    """The primary claims (named in advance, Holm-corrected together) and how many verdicts are exploratory:
    every claims row, plus every verdict in the studies' README tables."""
    rows = [{**c, "artefact": name} for name, cs in claims.items() for c in cs]
    primary = holm_family(rows)
    rows += [r for s in summaries.values() for table in s.get("readme_tables") or [] for r in table["rows"]
             if isinstance(r, dict) and r.get("verdict")]
    if not rows:
        return []
    table = [{"artefact": r["artefact"], "claim": r["claim"], "model": r["model"],
              "FR3E − GRPO++": _interval_text(r), "p": _p_text(r["p_value"]), "p (Holm)": _p_text(r["p_holm"]),
              "verdict (Holm)": r["verdict_holm"]} for r in primary]
    exploratory = len(rows) - len(primary)
    lines = ["## Primary claims", "",
             f"One claim per paper artefact, tested on each base model, was named before any run was read "
             f"(`fr3e.study.claims.PRIMARY_CLAIMS`): {len(primary)} tests, Holm-corrected together at a family-wise "
             f"{FAMILY_ALPHA:.0%} (the p-value is the two-sided t-test behind each paired 95% interval; a row "
             "without a t-interval stays inconclusive). Every other verdict in this file is exploratory: "
             f"{exploratory} of them, each at 95% with no correction, so about {exploratory / 20:.0f} would exclude "
             "0 by chance alone even if nothing differed.", ""]
    if table:
        lines += [_md_table(table, list(table[0])), ""]
    return lines


def _interval_text(row: dict) -> str:
    est, lo, hi = (row.get(k) for k in ("estimate", "ci_low", "ci_high"))
    if est is None or (isinstance(est, float) and math.isnan(est)):
        return "n/a"
    if lo is None or hi is None or any(isinstance(x, float) and math.isnan(x) for x in (lo, hi)):
        return f"{est:+.3g} (no interval)"
    return f"{est:+.3g} [{lo:+.3g}, {hi:+.3g}]"


def _p_text(p: float) -> str:
    return "n/a" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:.3f}"


def _ci(low, high) -> str:
    return "n/a" if low is None or high is None else f"[{low:+.1f}, {high:+.1f}]"


def _table1_readme(summary: dict) -> list[str]:
    """The Table 1 section's study numbers: problems per split, seeds per arm, deltas against each GRPO++ row
    with their half-widths, what would halve them, and each arm's gain over its base model."""
    lines = []
    if summary.get("problems_per_split"):
        lines += ["Problems per split: " + ", ".join(f"{k} {v}" for k, v in summary["problems_per_split"].items())
                  + ".", ""]
    if summary.get("seeds_per_arm"):
        lines += ["Seeds per arm: " + "; ".join(f"{model}: " + ", ".join(f"{arm} {n}" for arm, n in arms.items())
                                               for model, arms in summary["seeds_per_arm"].items()) + ".", ""]
    if summary.get("gains_over_base"):
        rows = [{**g, "gain": f"{g['gain']:+.1f}", "95% CI": _ci(g.get("ci_low"), g.get("ci_high"))}
                for g in summary["gains_over_base"]]
        lines += ["Gain over the base model (avg over splits, points; t-interval over seeds, base held fixed):", "",
                  _md_table(rows, ["model", "system", "gain", "95% CI", "seeds"])]
    if summary.get("deltas"):
        rows = [{**d, "baseline": METHOD_LABELS.get(d.get("baseline", "grpo_pp"), d.get("baseline")),
                 "delta": f"{d['delta']:+.1f}", "95% CI": _ci(d.get("ci_low"), d.get("ci_high")),
                 "half-width": "n/a" if d.get("ci_low") is None else f"{(d['ci_high'] - d['ci_low']) / 2:.1f}"}
                for d in summary["deltas"]]
        lines += ["FR3E − GRPO++ rows (points):", "",
                  _md_table(rows, ["model", "baseline", "benchmark", "delta", "95% CI", "half-width", "seeds"])]
    if summary.get("delta_half_widths"):
        target = summary.get("half_width_target", HALF_WIDTH_TARGET)

        def num(x, fmt="{:.1f}"):
            return "n/a" if x is None else fmt.format(x)

        rows = [{"model": r["model"], "baseline": METHOD_LABELS.get(r["baseline"], r["baseline"]),
                 "seeds": r["seeds"], "half-width": num(r["half_width"]), "target": f"met (≤ {target:g})" if r["meets_target"]
                 else f"missed (> {target:g})", "sd of differences": num(r["sd"]), "evaluation sd": num(r["eval_sd"]),
                 "seed sd": num(r["seed_sd"]), "dominant": r["dominant"],
                 "seeds to halve": num(r["seeds_to_halve"], "{}")} for r in summary["delta_half_widths"]]
        lines += [f"Precision of the avg delta (target half-width ≤ {target:g} points). Evaluation sd: the "
                  "per-problem bootstrap noise of one per-seed difference (an upper bound: both runs see the same "
                  "problems); seed sd: the rest of the spread between seeds. Seeds to halve: the seeds a "
                  "t-interval with the measured sd needs for half the half-width (≈ 4×); when evaluation noise "
                  "dominates, more problems per split shrink it instead.", "",
                  _md_table(rows, list(rows[0]))]
    return lines


def write_results_readme(results_dir: str | Path) -> Path:
    path = Path(results_dir) / "README.md"
    atomic_write_text(path, results_readme(results_dir))
    return path
