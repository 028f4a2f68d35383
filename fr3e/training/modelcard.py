"""Model cards: every saved final model directory describes itself in the Hugging Face format (README.md).

Not paper maths. `Trainer.save_model` writes `run_dir/model/README.md` beside the weights, so the folder can
be uploaded to the hub as it is (`huggingface-cli upload ORG/NAME runs/<name>/model`). The card has

- a YAML header the hub reads: `base_model` (only when the base is a hub id such as Qwen/Qwen2.5-7B; the
  hub rejects anything else there, so a tiny warm start or a local directory is named in the text instead),
  `library_name: transformers`, `pipeline_tag: text-generation` and `tags` (fr3e, the method, the profile);
- the method in a paragraph (FR3E or its GRPO++ baseline), with the paper it comes from;
- a summary of the training configuration (the fields that define the method and its cost), with the full
  resolved config in a folded YAML block;
- the final evaluation as a table: avg@n with its 95% interval, pass@1, pass@n and greedy accuracy per
  benchmark (the rows of eval.jsonl);
- the git commit of the code that trained it and the command that reproduces it.

It is written atomically (temporary file + rename), like every file a run produces.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from fr3e.training.config import TrainConfig
from fr3e.utils.io import atomic_write_text

PAPER = "Zheng et al., arXiv [2507.07017](https://arxiv.org/abs/2507.07017)"

METHOD_TEXT = {
    "fr3e": (
        "**FR3E** (First Return, Entropy-Eliciting Explore; {paper}). For each prompt a few base solutions are "
        "sampled; the highest-entropy tokens of a kept solution are its *anchors*, the prefixes that end there "
        "are *states*, and {m} continuations are re-sampled from every state. Each state's empirical value "
        "V(S_j) (the fraction of right continuations) scales the advantages of its continuations by "
        "α_j = modulation `{modulation}` of how the value changed along the trajectory; the policy loss is "
        "PPO-clip with Clip-Higher and a dual clip, averaged over all trained tokens."),
    "grpo_pp": (
        "**GRPO++**, the baseline of {paper}: GRPO with Clip-Higher, a dual clip, dynamic sampling (groups "
        "whose rollouts are all right or all wrong are dropped and refilled) and a token-level mean loss. "
        "{g} rollouts per prompt from the prompt itself (a single state S_0, no modulation)."),
}

SUMMARY_FIELDS = (
    ("method", "method"), ("base model", "model.base"), ("profile", "profile"), ("reward", "reward"),
    ("steps", "steps"), ("seed", "seed"), ("prompts per step", "data.prompts_per_step"),
    ("max response tokens", "data.max_response_tokens"), ("rollouts per prompt (G)", "grpo.rollouts_per_prompt"),
    ("anchors per trajectory (K)", "fr3e.num_anchors"), ("continuations per state (M)", "fr3e.continuations_per_state"),
    ("uncertainty scorer", "fr3e.scorer"), ("modulation", "fr3e.modulation"),
    ("learning rate", "optim.lr"), ("warm-up steps", "optim.warmup_steps"),
    ("clip ε low / high", ("optim.eps_low", "optim.eps_high")), ("dual clip c", "optim.dual_clip"),
    ("updates per batch", "optim.updates_per_batch"), ("dynamic sampling", "grpo.dynamic_sampling"),
    ("dtype", "model.dtype"), ("rollout engine", "rollout.engine"),
)
"""Rows of the configuration table: label, dotted field (FR3E-only rows are left out for grpo_pp)."""

FR3E_ONLY = ("fr3e.num_anchors", "fr3e.continuations_per_state", "fr3e.scorer", "fr3e.modulation")

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(name: str) -> bool:
    """'Qwen/Qwen2.5-7B' yes; 'general', '/abs/dir', './dir', 'runs/x/model' (an existing path) no."""
    return bool(_HUB_ID.match(name)) and not Path(name).exists()


def _get(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def _pct(x) -> str:
    return "–" if x is None else f"{100 * float(x):.1f}"


def eval_table(evals: list[dict]) -> str:
    """A Markdown table of evaluation rows (`fr3e.evaluation.evaluate.eval_rows`): one line per benchmark, in percent."""
    if not evals:
        return "No final evaluation was recorded for this model.\n"
    n = evals[0]["n"]
    lines = [f"| benchmark | problems | avg@{n} [95% CI] | pass@1 | pass@{n} | greedy |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in evals:
        lo, hi = row.get("avg_ci") or (None, None)
        passes = row.get("pass") or {}
        lines.append(f"| {row['benchmark']} | {row.get('num_problems', '–')} | {_pct(row['avg'])} "
                     f"[{_pct(lo)}, {_pct(hi)}] | {_pct(passes.get('1'))} | {_pct(passes.get(str(row['n'])))} "
                     f"| {_pct(row.get('greedy'))} |")
    return "\n".join(lines) + "\n"


def model_card(config: TrainConfig, evals: list[dict], git_sha: str | None) -> str:
    """The README.md text of a final model directory (YAML header + Markdown), for `config` and its final
    evaluation rows `evals`."""
    cfg = config.to_dict()
    base = config.model.base
    header: dict = {}
    if is_hub_id(base):
        header["base_model"] = base
    header.update({"library_name": "transformers", "pipeline_tag": "text-generation",
                   "tags": list(dict.fromkeys(["fr3e", config.method.replace("_", "-"), "reinforcement-learning",
                                                  "math-reasoning", f"{config.profile}-profile"]))})
    method = METHOD_TEXT[config.method].format(paper=PAPER, m=config.fr3e.continuations_per_state,
                                                modulation=config.modulation, g=config.grpo.rollouts_per_prompt)
    rows = []
    for label, field in SUMMARY_FIELDS:
        if config.method != "fr3e" and field in FR3E_ONLY:
            continue
        value = " / ".join(str(_get(cfg, f)) for f in field) if isinstance(field, tuple) else str(_get(cfg, field))
        rows.append(f"| {label} | `{value}` |")
    step = evals[0]["step"] if evals else config.steps
    sha = git_sha or "unknown (trained outside a git checkout)"
    base_text = (f"[`{base}`](https://huggingface.co/{base})" if "base_model" in header else
                 f"`{base}` (the tiny profile's warm-started model)" if base in ("general", "math") else f"`{base}`")
    parts = [
        "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n",
        f"# {config.name}\n",
        f"{base_text} trained with {'FR3E' if config.method == 'fr3e' else 'GRPO++'} for {config.steps} steps "
        f"by the `fr3e` package (git `{sha}`).\n",
        "## Method\n",
        method + "\n",
        "## Training configuration\n",
        "| setting | value |\n|---|---|\n" + "\n".join(rows) + "\n",
        "<details><summary>Full resolved configuration</summary>\n\n```yaml\n"
        + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True) + "```\n\n</details>\n",
        f"## Evaluation (after step {step})\n",
        f"Accuracy in percent; avg@n is the mean over n = {evals[0]['n'] if evals else config.data.eval_n} samples "
        f"per problem (temperature {config.data.eval_temperature}, top-p {config.data.eval_top_p}) with a 95% "
        "bootstrap interval over problems; pass@k is the unbiased estimator; greedy is one greedy sample.\n",
        eval_table(evals),
        "## Reproduce\n",
        f"Code: git `{sha}`. Save the configuration above as `config.yaml`, then\n\n"
        f"```bash\nfr3e train --config config.yaml --run-dir runs/{config.name}\n```\n",
    ]
    return "\n".join(parts)


def write_model_card(model_dir: str | Path, config: TrainConfig, evals: list[dict],
                     git_sha: str | None = None) -> Path:
    """Write `model_dir/README.md` atomically; `git_sha` defaults to the commit of the package source."""
    if git_sha is None:
        from fr3e.training.runlog import git_sha as current_sha

        git_sha = current_sha()
    path = Path(model_dir) / "README.md"
    atomic_write_text(path, model_card(config, evals, git_sha))
    return path
