"""From run directories to the paper's artefacts: aggregate runs into tables, write artefacts and the results README.

Notebooks call these functions and hold no logic of their own. One job per module:

- `fr3e.study.runs`: launch / reuse runs (`ensure_runs`), read run directories (`load_metrics`, `load_evals`,
  `load_final_evals`, `load_samples`), evaluate the base models (`base_evals`).
- `fr3e.study.stats`: pure statistics (t-intervals, paired bootstrap, Welch / difference of differences, verdicts).
- `fr3e.study.claims`: the claims table, "claim | model | paper | ours | verdict", each verdict from an interval.
- `fr3e.study.walkthrough`: one FR3E step by hand (the walkthrough notebook).
- `fr3e.study.tables`: **aggregations** (pure functions on DataFrames, unit-tested): `table1_summary` / `table1` (avg@n in %,
  mean ± sample std over seeds, one row per arm: base, GRPO++, the controls, FR3E), `deltas` (FR3E − each
  GRPO++ row with a 95% paired t-interval over seeds), `delta_precision` (half-widths, evaluation vs seed
  noise, seeds to halve), `gains_over_base`, `table1_study` (what Table 1's summary.json adds),
  `phase_values` (per-seed start / end of training means), `composition_shares`, `training_summary`,
  `cost_summary`, `paper_reference` (the one Table 1 cell the paper's public text gives).
- `fr3e.study.artefacts`: `write_artefact` writes `data.csv`, `summary.json`, `figure.png`, `provenance.json` atomically into
  `results/<artefact>/`; `results_readme` writes `results/README.md` from those summaries.

This module is the notebooks' one import: it re-exports the public names of the modules above (notebooks
use `report.<name>`) and holds no logic; nothing in `fr3e` imports it, so the modules above never import
each other in a circle.
"""


# ruff: noqa: F401 - every import below is a re-export for the notebooks
from fr3e.study.artefacts import (
    ARTEFACT_TITLES,
    Clock,
    figure_png,
    git_sha,
    package_versions,
    provenance,
    results_readme,
    write_artefact,
    write_results_readme,
)
from fr3e.study.claims import (
    ARTEFACTS,
    COLUMNS,
    DETAIL_COLUMNS,
    KINDS,
    MATH_CLAIM,
    MATH_PAPER,
    SPECS,
    TABLE1_CLAIM,
    TABLE1_PAPER,
    Claim,
    change_claim,
    claim_table1,
    claim_table1_from_deltas,
    claim_walkthrough,
    claims_table,
    eval_claim,
    interval_claim,
    level_claim,
    ratio_claim,
    select_arms,
    verdict_counts,
)
from fr3e.study.committed import (
    EVAL_NOT_COMMITTED,
    NOT_COMMITTED,
    NOT_COMMITTED_SHORT,
    claims_from_committed,
    committed_parameters,
    committed_runs,
    committed_summary,
    open_committed,
    recompute_committed_claims,
)
from fr3e.study.jobs import (
    Job,
    plan_jobs,
)
from fr3e.study.launch import (
    Status,
    default_workers,
    ensure_runs,
    format_duration,
    progress_line,
    subprocess_env,
)
from fr3e.study.loaders import (
    base_evals,
    eval_rows,
    final_eval,
    first_sample,
    load_evals,
    load_final_eval,
    load_final_evals,
    load_metrics,
    load_probe,
    load_samples,
    run_meta,
    tiny_model_dir,
)
from fr3e.study.runs import (
    ARM_LABELS,
    CONFIG_DIR,
    CONTROLS,
    DEFAULT_CACHE,
    METHODS,
    PAPER_BASE_MODELS,
    REPO_ROOT,
    Control,
    RunInfo,
    accelerate_command,
    arm_of,
    describe_runs,
    final_eval_path,
    matched_group_size,
    recipes,
    run_dirs,
    run_name,
    safe_name,
    train_command,
)
from fr3e.study.stats import (
    VERDICTS,
    diff_of_diffs_interval,
    finite,
    fmt_interval,
    fmt_mean_std,
    fmt_signed,
    fmt_verdict,
    mean_std,
    paired_bootstrap_interval,
    paired_t_interval,
    sd_from_t_interval,
    seeds_for_half_width,
    t_interval,
    t_quantile_975,
    variance_split,
    verdict,
    welch_interval,
)
from fr3e.study.tables import (
    ARMS,
    BASELINES,
    BENCHMARKS,
    DELTA_COLUMNS,
    HALF_WIDTH_TARGET,
    LATE_FRACTION,
    METHOD_LABELS,
    PAPER_BENCHMARKS,
    PAPER_MODELS,
    STANDS_IN_FOR,
    STATISTICS,
    SYSTEMS,
    composition_shares,
    cost_summary,
    delta_precision,
    deltas,
    gains_over_base,
    paper_reference,
    per_seed_deltas,
    phase_values,
    problems_per_split,
    seeds_per_arm,
    table1,
    table1_study,
    table1_summary,
    training_summary,
    with_arm,
)
from fr3e.study.walkthrough import (
    committed_sample,
    walkthrough,
    walkthrough_sample,
    walkthrough_table,
)
