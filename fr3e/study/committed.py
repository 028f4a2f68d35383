"""The claims of committed results, rebuilt from the repository alone (no run directories needed).

With the runs' logs archived beside the results (`<results_dir>/runs/`, `fr3e.study.artefacts.archive_runs`),
every claim is recomputed exactly as its notebook computed it. Results written before runs were archived keep
what their files allow: Table 1 from the stored paired intervals, the walkthrough from the stored sample, the
training-curve claims as point estimates marked `inconclusive` with the reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fr3e.study.claims import (
    ARTEFACTS,
    COLUMNS,
    DETAIL_COLUMNS,
    SPECS,
    Claim,
    _fmt,
    _missing,
    _models,
    _num,
    _paired,
    _row,
    claim_table1,
    claim_table1_from_deltas,
    claim_walkthrough,
    claims_table,
)
from fr3e.study.tables import phase_values

NOT_COMMITTED = ("per-seed values are not in the committed results (data.csv holds the mean and std over seeds "
                 "per step, summary.json no per-seed values); rerun the notebook on the run directories for the "
                 "paired interval")
"""Why a committed training-curve claim has no interval (stored in its `interval` field and the README)."""
NOT_COMMITTED_SHORT = "per-seed values not committed"
EVAL_NOT_COMMITTED = ("the final evaluations' per-run values (eval.jsonl) are not in the committed results; rerun "
                      "the notebook on the run directories")


def committed_runs(artefact_dir: str | Path) -> list[Path] | None:
    """The archived logs (`<results_dir>/runs/...`, `fr3e.study.artefacts.archive_runs`) of every run named in a
    committed artefact's provenance.json; None when the artefact names no run or any of them is not archived."""
    from fr3e.study.runs import archived_run

    artefact_dir = Path(artefact_dir)
    prov = artefact_dir / "provenance.json"
    names = json.loads(prov.read_text()).get("run_dirs") or [] if prov.exists() else []
    found = [archived_run(artefact_dir.parent, d) for d in names]
    return found if found and all((d / "config.json").exists() for d in found) else None


def open_committed(artefact: str, committed_dir: str | Path = "results"):
    """(runs, runs_root) of a committed artefact, for a notebook opened with `source='committed'`: one `RunInfo`
    per run its provenance.json names, pointing at the logs archived in `<committed_dir>/runs/`, and that folder
    (where the base models' evaluations are archived too). Nothing trains or evaluates."""
    from fr3e.study.loaders import run_meta
    from fr3e.study.runs import ARCHIVE, RunInfo

    artefact_dir = Path(committed_dir) / artefact
    dirs = committed_runs(artefact_dir)
    if dirs is None:
        raise FileNotFoundError(f"{artefact_dir}: no committed run logs to open (its provenance.json names no run, or "
                                f"some are not archived under {Path(committed_dir) / ARCHIVE}); run the notebook with "
                                "source='train'")
    runs = []
    for d in dirs:
        meta = run_meta(d)
        runs.append(RunInfo(meta["method"], meta["model"], meta["seed"], meta["steps"], d, Path(), meta["arm"]))
    return runs, Path(committed_dir) / ARCHIVE


def committed_parameters(notebook: str | Path, profile: str = "tiny", world: str | None = None) -> dict:
    """The parameters a notebook's committed results were made with (those `make reproduce` injects), minus where
    runs and results live: what a notebook opened with `source='committed'` sets before reading the logs."""
    from fr3e.study.reproduction import parameters_for

    params = parameters_for(profile, smoke=False, notebook=notebook, **({"world": world} if world else {}))
    return {k: v for k, v in params.items() if k not in ("runs_root", "results_dir", "cache_dir", "source",
                                                         "committed_dir", "accelerate_config")}


def committed_summary(artefact: str, committed_dir: str | Path = "results") -> dict:
    """`<committed_dir>/<artefact>/summary.json`, for what a notebook cannot recompute from run logs (the final
    policies' diversity cards need the models)."""
    from fr3e.utils.io import read_json

    path = Path(committed_dir) / artefact / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run the notebook with source='train' first")
    return read_json(path, "restore it with git checkout")


def claims_from_committed(artefact_dir: str | Path) -> list[dict]:
    """The claims of a committed `results/<artefact>/`, rebuilt from the repository alone.

    When the runs' logs are archived beside the results (`committed_runs`), every claim is recomputed from them
    exactly as the notebook computed it (per-seed values, paired intervals). Otherwise (results written before
    runs were archived): walkthrough from the stored sample; table1 from the stored per-model paired intervals
    (`deltas`); training-curve artefacts the point estimates from data.csv (last-quarter mean of the seed means,
    equal to the mean over seeds of each seed's last-quarter mean) with verdict `inconclusive` and the reason,
    because the per-seed values an interval needs were not committed; evaluation claims likewise.
    """
    artefact_dir = Path(artefact_dir)
    artefact = artefact_dir.name
    summary = json.loads((artefact_dir / "summary.json").read_text())
    if artefact == "walkthrough":
        return claim_walkthrough(summary["sample"])
    archived = committed_runs(artefact_dir) if artefact in ARTEFACTS else None
    if archived is not None:
        from fr3e.study.loaders import load_final_evals, load_metrics, load_probe

        final = load_final_evals(archived)
        if artefact == "table1":
            return claim_table1(final)
        table = claims_table(load_metrics(archived), final, artefacts=[artefact], probe=load_probe(archived),
                             details=True)
        return table.to_dict("records")
    if artefact == "table1":
        return claim_table1_from_deltas(pd.DataFrame(summary["deltas"]))
    data = pd.read_csv(artefact_dir / "data.csv")
    rows = []
    for spec in (s for s in SPECS if s.artefact == artefact):
        rows += _committed_rows(spec, data)
    return rows


def _committed_rows(spec: Claim, data: pd.DataFrame) -> list[dict]:
    models = _models(data)
    if spec.kind == "probe":
        return _missing(spec, "the probe-set entropy is not in these committed results (runs made before probe.jsonl)",
                        models)
    if spec.kind == "eval":
        return [_row(spec.claim, m, spec.paper, f"{spec.column} at the final evaluation: not committed", math.nan,
                     math.nan, math.nan, spec.direction, "none: " + EVAL_NOT_COMMITTED, spec.digits,
                     "final-evaluation values not committed") for m in models]
    means = data.assign(seed=0)
    if spec.kind == "change":
        col = f"{spec.column}_mean"
        late, early = phase_values(means, col, "late"), phase_values(means, col, "early")
        per = late.assign(value=late["value"] - early["value"])
        what = "change end − start of training of the seed-mean share"
    elif spec.kind == "ratio":
        col = f"{spec.column}_mean"
        late, early = phase_values(means, col, "late"), phase_values(means, col, "early")
        per = late.assign(value=late["value"] / early["value"])
        what = "end / start of the seed-mean curve (not the mean of per-seed ratios)"
    else:
        per = phase_values(means, f"{spec.column}_mean", "late")
        what = "last quarter of steps, mean over seeds"
    rows = []
    for model in models:
        _, a, b = _paired(per, model)
        if not a.size:
            rows += _missing(spec, f"{spec.column} not in data.csv", [model])
            continue
        a, b = spec.scale * a[0], spec.scale * b[0]
        ours = f"FR3E {_fmt(b, spec)} vs GRPO++ {_fmt(a, spec)}{spec.unit} ({what})"
        rows.append(_row(spec.claim, model, spec.paper, ours, b - a, math.nan, math.nan, spec.direction,
                         "none: " + NOT_COMMITTED, spec.digits, NOT_COMMITTED_SHORT))
    return rows


def recompute_committed_claims(results_dir: str | Path, artefacts: Sequence[str] | None = None) -> dict[str, int]:
    """Rewrite the `claims` (and `statistics`) of each committed results/<artefact>/summary.json from the
    committed data alone (`claims_from_committed`). Returns artefact -> number of claim rows."""
    from fr3e.study.tables import STATISTICS, _jsonable
    from fr3e.utils.io import atomic_write_json

    results_dir = Path(results_dir)
    done = {}
    for name in artefacts or ("walkthrough", *ARTEFACTS):
        path = results_dir / name / "summary.json"
        if not path.exists():
            continue
        summary = json.loads(path.read_text())
        rows = claims_from_committed(path.parent)
        summary["claims"] = pd.DataFrame(rows, columns=COLUMNS + DETAIL_COLUMNS)
        summary["statistics"] = STATISTICS
        if committed_runs(path.parent) is not None:
            note = ("recomputed from the runs' logs archived in the results' runs/ folder by "
                    "`fr3e.study.committed.recompute_committed_claims`")
        else:
            note = ("rebuilt from this folder's committed summary.json / data.csv by "
                    "`fr3e.study.committed.recompute_committed_claims`, without the run directories")
        if any(not np.isfinite(_num(r["ci_low"])) for r in rows) and name in ("entropy", "length", "advantage",
                                                                                "all_right"):
            note += f"; rows without an interval: {NOT_COMMITTED}"
        if any(r["interval"] == "none: " + EVAL_NOT_COMMITTED for r in rows):
            note += f"; evaluation rows: {EVAL_NOT_COMMITTED}"
        summary["claims_recomputed"] = note
        atomic_write_json(path, _jsonable(summary))
        done[name] = len(rows)
    return done
