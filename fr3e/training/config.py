"""Configuration dataclasses for FR3E, GRPO++ and the optimisation, with YAML load/save.

Every field carries one line of help (``field(metadata={"help": ...})``) naming where its default comes
from: the paper (arXiv 2507.07017), the authors' run script (GitHub Zheng0428/FR3E, where the method is
called "SRPO"), DAPO (arXiv 2503.14476, for Clip-Higher and dynamic sampling) or our own choice with its
reason. Defaults are the paper-scale values; the `tiny` recipes in ``reproduce/configs/`` override what
the CPU miniature needs. ``__post_init__`` rejects impossible values with a message saying what to change.

YAML files mirror the nesting of :class:`TrainConfig`; an unknown key is an error listing the valid keys
and the closest match, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fr3e.utils.errors import UserError

SCORERS = ("entropy", "surprisal", "random", "newline")
MODULATIONS = ("paper", "official", "none")
ADVANTAGE_SCALES = ("none", "std")
LOSS_AGGREGATIONS = ("token-mean", "seq-mean")
METHODS = ("fr3e", "grpo_pp")
ENGINES = ("hf", "vllm")
PROFILES = ("tiny", "paper")
REWARDS = ("verifier", "coin")
REPORT_TARGETS = ("tensorboard", "wandb")
NOT_RUN_IDENTITY = ("report_to",)
"""Top-level fields that change where a run is shown, not what it trains: a resume or a reuse ignores them."""
ABSENT_MEANS_DEFAULT = ("fr3e.adaptive_budget", "fr3e.adaptive_round", "fr3e.adaptive_width", "fr3e.step_delimiter",
                        "probe_every", "probe_prompts", "probe_n", "optim.entropy_coef", "optim.adaptive_entropy",
                        "optim.entropy_target", "optim.entropy_coef_delta", "optim.entropy_coef_min",
                        "optim.entropy_coef_max", "optim.top_entropy_quantile", "optim.micro_batch_tokens",
                        "rollout.kv_cache_gb")
"""Fields added after runs were recorded, whose default is the behaviour before them: a saved config without
one of them matches a config that holds its default (so earlier runs can still be resumed and reused). One
exception: a `newline`-scorer run saved without `fr3e.step_delimiter` split steps at "\\n\\n", which the tiny
world never writes, so it never branched; `stale_newline_run` refuses to reuse it."""


def stale_newline_run(saved: dict) -> bool:
    """A saved config of a `newline` run from before `fr3e.step_delimiter` existed (it never branched)."""
    fr3e = saved.get("fr3e") or {}
    return fr3e.get("scorer") == "newline" and "step_delimiter" not in fr3e


class ConfigError(UserError, ValueError):
    """A configuration value or key that cannot be used; the message says what to change."""


def _help(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING):
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _check_choice(section: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, f"{section}.{name}={value!r} is not one of {list(choices)}; set one of those.")


@dataclass
class FR3EConfig:
    """First return (anchors, states) and entropy-eliciting explore (continuations, modulation)."""

    num_anchors: int = _help("K anchors per kept base trajectory. Authors' run script: 4 (paper gives no K).", 4)
    continuations_per_state: int = _help(
        "M continuations sampled from every state. Authors' run script: 16 (paper gives no M).", 16)
    scorer: str = _help(
        "Uncertainty that ranks anchor positions: 'entropy' (paper §3, full-vocabulary H_t), 'surprisal' "
        "(authors' code, -log π of the sampled token), 'random' (control), 'newline' (the first token of "
        "each reasoning step, after `fr3e.step_delimiter`).", "entropy")
    step_delimiter: str = _help(
        "What separates reasoning steps, for the 'newline' scorer; empty: the task's own (tiny arithmetic "
        "world: one \\n per step, fr3e.tasks.arithmetic.STEP_DELIMITER; paper profile: a blank line, \\n\\n).", "")
    modulation: str = _help(
        "α variant: 'paper' (α_0=1, α_j=exp(-(V_j-V_{j-1}))), 'official' (authors' δ_0=1-V_0, |δ|^1.5 "
        "sharpening), 'none' (α≡1, plain GRPO++ advantages on FR3E's rollouts).", "paper")
    base_per_prompt: int = _help(
        "Base trajectories sampled per prompt (never trained on). Authors' run script: 4.", 4)
    keep_right: int = _help("At most this many correct base trajectories kept per prompt. Authors' code: 1.", 1)
    keep_wrong: int = _help("At most this many wrong base trajectories kept per prompt. Authors' code: 1.", 1)
    min_anchor_gap: int = _help(
        "Minimum distance in tokens between two anchors of one trajectory. Our choice: 0 (off, as paper).", 0)
    continuation_max_tokens: int = _help(
        "Fixed generation budget from every state, whatever the prefix length. Our choice (the authors' "
        "budget shrinks with prefix length, biasing late states to 0). 0 = use data.max_response_tokens.", 0)
    score_prefix: bool = _help(
        "Reward scores prefix ⊕ continuation. Our choice: True (authors score the continuation only, so an "
        "answer already in the prefix scores 0).", True)
    adaptive_budget: bool = _help(
        "Sample continuations per state in rounds, stop a state early once its outcome is settled and give the "
        "saved budget to unsettled states of the same step, never more than states × M in all (fr3e.method.budget; "
        "our extension, not in the paper). Our choice: False, every state gets exactly M (paper).", False)
    adaptive_round: int = _help(
        "Adaptive budget: continuations per state per round; a state whose first adaptive_round rewards are "
        "all equal is settled. Our choice: 4 (all-equal at 4 leaves a Wilson 95% interval of width 0.49).", 4)
    adaptive_width: float = _help(
        "Adaptive budget: a state is also settled once the Wilson 95% interval of its success rate is narrower "
        "than this. Our choice: 0.0 (rule off; for reference, a value of 0.5 after 16 continuations has width "
        "0.44, after 32 width 0.33). A state never takes more than 2·M (fr3e.method.budget.CAP_FACTOR).", 0.0)

    def __post_init__(self) -> None:
        _check(self.num_anchors >= 1, f"fr3e.num_anchors={self.num_anchors}: FR3E needs K >= 1 anchors "
               "(use method: grpo_pp for no branching).")
        _check(self.continuations_per_state >= 2, f"fr3e.continuations_per_state={self.continuations_per_state}: "
               "a state value and a group advantage need M >= 2 continuations; set 2 or more (paper code: 16).")
        _check_choice("fr3e", "scorer", self.scorer, SCORERS)
        _check_choice("fr3e", "modulation", self.modulation, MODULATIONS)
        _check(self.base_per_prompt >= 1, f"fr3e.base_per_prompt={self.base_per_prompt}: sample at least 1 base "
               "trajectory per prompt.")
        _check(self.keep_right >= 0 and self.keep_wrong >= 0 and self.keep_right + self.keep_wrong >= 1,
               f"fr3e.keep_right={self.keep_right}, keep_wrong={self.keep_wrong}: keep at least one base "
               "trajectory per prompt (authors: 1 and 1).")
        _check(self.min_anchor_gap >= 0, f"fr3e.min_anchor_gap={self.min_anchor_gap}: use 0 (off) or a positive gap.")
        _check(self.continuation_max_tokens >= 0, "fr3e.continuation_max_tokens must be >= 0 (0 = data.max_response_tokens).")
        _check(self.adaptive_round >= 2, f"fr3e.adaptive_round={self.adaptive_round}: a state is settled when its "
               "first adaptive_round rewards agree, which needs 2 or more (our default: 4).")
        _check(0.0 <= self.adaptive_width < 1.0, f"fr3e.adaptive_width={self.adaptive_width}: use 0.0 (off) or a "
               "Wilson interval width in (0, 1).")
        _check(not self.adaptive_budget or self.adaptive_round <= self.continuations_per_state,
               f"fr3e.adaptive_round={self.adaptive_round} exceeds fr3e.continuations_per_state="
               f"{self.continuations_per_state}: the first round must fit the budget of M per state; set "
               "adaptive_round <= M.")


@dataclass
class GRPOConfig:
    """GRPO++ = GRPO + dynamic sampling (rejection of zero-signal groups) + Clip-Higher (in OptimConfig)."""

    rollouts_per_prompt: int = _help("G rollouts per prompt for GRPO++. Paper appendix D.1: 4.", 4)
    dynamic_sampling: bool = _help(
        "Drop all-right / all-wrong groups and refill from further prompts. Paper (GRPO++ = GRPO + rejection "
        "sampling), DAPO §3.2.", True)
    max_refill_rounds: int = _help(
        "Cap on extra generation rounds per step when dynamic sampling has not reached the batch target. "
        "Our choice: 3 (DAPO accumulates without a cap; a cap bounds step time).", 3)
    advantage_scale: str = _help(
        "Group advantage Â = r - mean ('none', authors' code and Dr. GRPO) or (r - mean)/std ('std', "
        "original GRPO).", "none")

    def __post_init__(self) -> None:
        _check(self.rollouts_per_prompt >= 2, f"grpo.rollouts_per_prompt={self.rollouts_per_prompt}: a group "
               "advantage needs G >= 2 rollouts per prompt (paper: 4).")
        _check(self.max_refill_rounds >= 0, "grpo.max_refill_rounds must be >= 0.")
        _check_choice("grpo", "advantage_scale", self.advantage_scale, ADVANTAGE_SCALES)


@dataclass
class OptimConfig:
    """Policy-gradient loss and optimizer (shared by both methods)."""

    lr: float = _help("AdamW learning rate, constant. Authors' run script: 2e-6.", 2e-6)
    weight_decay: float = _help("AdamW weight decay. Authors' run script: 0.01.", 0.01)
    eps_low: float = _help("Clip-Higher lower bound: ratio >= 1-eps_low. Authors' script 0.2 (paper app.: 0.22).", 0.2)
    eps_high: float = _help("Clip-Higher upper bound: ratio <= 1+eps_high. Authors' script 0.3 (paper app.: 0.28).", 0.3)
    dual_clip: float = _help(
        "Dual-clip constant c for negative advantages (loss capped at -c·A); 0 disables. Authors' script: 3.", 3.0)
    updates_per_batch: int = _help(
        "Optimizer steps per rollout batch (mini-batches over the batch). Authors: 1, which makes the ratio ≡ 1 "
        "and Clip-Higher inert; our default 2 so clipping can act (the paper recipes and the path-world tiny recipes). The "
        "arithmetic tiny recipes set 1: there GRPO++ and FR3E run on-policy and no clip ever acts (see the "
        "README's deviations table).", 2)
    loss_aggregation: str = _help(
        "'token-mean' over all valid tokens of the whole batch (DAPO; global, not per micro-batch as in the "
        "authors' code) or 'seq-mean' (mean per sequence, then over sequences).", "token-mean")
    grad_clip: float = _help("Gradient-norm clip. Authors' run script: 1.0. 0 disables.", 1.0)
    micro_batch_size: int = _help(
        "Sequences per forward/backward micro-batch (memory only: normalisation is global).", 64)
    micro_batch_tokens: int = _help(
        "Cap on the padded tokens (rows × longest row) of one forward/backward micro-batch, on top of "
        "micro_batch_size, so FR3E's long prefix ⊕ continuation rows and short ones cost the same memory per "
        "micro-batch (verl's dynamic batch size). A row longer than the cap gets a micro-batch of its own. "
        "0 = rows only.", 0)
    warmup_steps: int = _help("Linear lr warm-up steps; 0 = constant lr (authors' run script).", 0)
    # The two fixes for entropy collapse a TRL user tries first (TRL GRPOConfig names; not in FR3E or GRPO++).
    entropy_coef: float = _help(
        "Entropy bonus: the loss becomes L - coef·H̄, H̄ the mean full-vocabulary entropy of the trained tokens of "
        "each mini-batch (over every process). 0 disables. With adaptive_entropy, the starting coefficient. TRL: "
        "entropy_coef.", 0.0)
    adaptive_entropy: bool = _help(
        "Adaptive entropy coefficient (Skywork-OR1, TRL use_adaptive_entropy): after each optimizer step the "
        "coefficient moves up by entropy_coef_delta when that step's H̄ <= entropy_target and down otherwise, "
        "within [entropy_coef_min, entropy_coef_max]; the bonus applies only while the last H̄ <= entropy_target.",
        False)
    entropy_target: float = _help("Target H̄ in nats for adaptive_entropy (TRL default: 0.2).", 0.2)
    entropy_coef_delta: float = _help("Step of the adaptive coefficient per optimizer step (TRL: 0.005).", 0.005)
    entropy_coef_min: float = _help("Floor of the adaptive coefficient (TRL: 0).", 0.0)
    entropy_coef_max: float = _help("Ceiling of the adaptive coefficient (TRL: 1).", 1.0)
    top_entropy_quantile: float = _help(
        "Policy-gradient updates on the highest-entropy tokens only (\"Beyond the 80/20 Rule\", Wang et al. 2025; "
        "TRL top_entropy_quantile): of a batch's trained tokens, the ceil(ρ·N) with the highest entropy under the "
        "policy that sampled them (ties kept) carry the loss, over every process; the token-mean still divides by "
        "all N, as in that paper. 1 keeps every token; the paper recommends 0.2.", 1.0)

    def __post_init__(self) -> None:
        _check(self.lr > 0, f"optim.lr={self.lr}: the learning rate must be positive.")
        _check(self.entropy_coef >= 0, f"optim.entropy_coef={self.entropy_coef}: use 0 (off) or a positive bonus.")
        _check(0 <= self.entropy_coef_min <= self.entropy_coef_max, "optim.entropy_coef_min must be >= 0 and <= "
               f"optim.entropy_coef_max (got {self.entropy_coef_min} and {self.entropy_coef_max}).")
        _check(self.entropy_coef_delta >= 0, "optim.entropy_coef_delta must be >= 0.")
        _check(self.entropy_target >= 0, "optim.entropy_target must be >= 0 nats.")
        _check(0 < self.top_entropy_quantile <= 1, f"optim.top_entropy_quantile={self.top_entropy_quantile}: "
               "use a share in (0, 1]; 1 trains every token, 0.2 the top fifth.")
        _check(self.top_entropy_quantile == 1 or self.loss_aggregation == "token-mean",
               "optim.top_entropy_quantile < 1 needs optim.loss_aggregation=token-mean (the top-entropy loss divides by "
               "every trained token of the batch).")
        _check(0 <= self.eps_low < 1, f"optim.eps_low={self.eps_low}: must be in [0, 1) (ratio floor 1-eps_low > 0).")
        _check(self.eps_high >= 0, f"optim.eps_high={self.eps_high}: must be >= 0 (DAPO: 0.28).")
        _check(self.dual_clip == 0 or self.dual_clip > 1, f"optim.dual_clip={self.dual_clip}: use 0 (off) or a "
               "constant > 1 (authors: 3).")
        _check(self.updates_per_batch >= 1, "optim.updates_per_batch must be >= 1.")
        _check_choice("optim", "loss_aggregation", self.loss_aggregation, LOSS_AGGREGATIONS)
        _check(self.grad_clip >= 0, "optim.grad_clip must be >= 0 (0 disables).")
        _check(self.micro_batch_size >= 1, "optim.micro_batch_size must be >= 1.")
        _check(self.micro_batch_tokens >= 0, "optim.micro_batch_tokens must be >= 0 (0: cap by rows only).")
        _check(self.weight_decay >= 0, "optim.weight_decay must be >= 0.")
        _check(self.warmup_steps >= 0, "optim.warmup_steps must be >= 0.")


@dataclass
class DataConfig:
    """Where prompts come from and how long sequences may be."""

    train: str = _help("Training prompts: 'tiny/train' (embedded task) or 'paper/train' (DeepScaleR + "
                       "SimpleRL-Zoo MATH L3-5, paper §4).", "tiny/train")
    world: str = _help("Tiny profile: the embedded world of 'tiny/train', the evaluation splits and the base models: "
                       "'arithmetic' (worked multiplications, no forks: the control) or 'paths' (paths in a fixed "
                       "digraph: many correct answers, free length); see fr3e.tasks.worlds.", "arithmetic")
    train_size: int = _help("Number of training prompts drawn (tiny profile); 0 = the whole set.", 4096)
    prompts_per_step: int = _help(
        "Batch target: prompts per step whose groups carry signal after dynamic sampling. Authors: 32.", 32)
    max_prompt_tokens: int = _help("Longest prompt in tokens; longer prompts are dropped. Authors: 1024.", 1024)
    max_response_tokens: int = _help("Generation budget of base trajectories and GRPO++ rollouts. Authors: 3072.", 3072)
    local_files: dict = _help(
        "Local replacements for hub datasets, name -> .jsonl/.json/.parquet path (paper profile; CLI --data "
        "name=path). Names: see fr3e.data.paper.DATASETS.", factory=dict)
    eval_benchmarks: list[str] = _help(
        "Benchmarks evaluated during and after training.", factory=lambda: ["easy", "medium", "hard"])
    eval_problems: int = _help("Problems per benchmark in periodic evaluation (0 = all).", 128)
    eval_n: int = _help("Samples per problem in evaluation (avg@n). Authors: 16.", 16)
    eval_temperature: float = _help("Evaluation temperature. Authors: 1.0.", 1.0)
    eval_top_p: float = _help("Evaluation top-p. Authors: 0.95.", 0.95)

    def __post_init__(self) -> None:
        _check(self.prompts_per_step >= 1, "data.prompts_per_step must be >= 1.")
        _check(self.max_response_tokens >= 1 and self.max_prompt_tokens >= 1, "data token limits must be >= 1.")
        _check(self.eval_n >= 1, "data.eval_n must be >= 1.")
        _check(self.train_size >= 0 and self.eval_problems >= 0, "data sizes must be >= 0 (0 = all).")
        from fr3e.tasks.worlds import WORLDS

        _check(self.world in WORLDS, f"data.world={self.world!r}: use one of {', '.join(WORLDS)}.")


@dataclass
class ModelConfig:
    """Which policy to start from."""

    base: str = _help("Tiny profile: 'general' or 'math' (embedded warm-started models); paper profile: a hub id "
                      "or a local directory, e.g. 'Qwen/Qwen2.5-7B'.", "general")
    dtype: str = _help("Training dtype: 'float32' (CPU) or 'bfloat16' (GPU).", "float32")
    gradient_checkpointing: bool = _help("Trade compute for memory (paper-scale models).", False)

    def __post_init__(self) -> None:
        _check(self.dtype in ("float32", "bfloat16", "float16"),
               f"model.dtype={self.dtype!r}: use 'float32', 'bfloat16' or 'float16'.")


@dataclass
class RolloutConfig:
    """How training rollouts are sampled."""

    engine: str = _help("'hf' (transformers generate, CPU/GPU) or 'vllm' (GPU, prefix caching).", "hf")
    temperature: float = _help("Sampling temperature of rollouts and continuations. Authors: 1.0.", 1.0)
    top_p: float = _help("Nucleus sampling for rollouts. Authors: 1.0.", 1.0)
    batch_size: int = _help("Rows per generate call (memory only).", 256)
    kv_cache_gb: float = _help(
        "HF engine: GB of keys and values one generation chunk may hold (rows per chunk are cut to fit the longest "
        "prompt + response of the call; memory only). 0 = batch_size rows, whatever their length.", 0.0)
    gpu_memory_utilization: float = _help("vLLM share of GPU memory when colocated with training.", 0.35)
    tensor_parallel_size: int = _help("vLLM tensor parallel degree (32B models: 2-4).", 1)

    def __post_init__(self) -> None:
        _check_choice("rollout", "engine", self.engine, ENGINES)
        _check(self.temperature > 0, f"rollout.temperature={self.temperature}: RL needs sampling, use > 0 (authors: 1.0).")
        _check(0 < self.top_p <= 1, f"rollout.top_p={self.top_p}: must be in (0, 1].")
        _check(0 < self.gpu_memory_utilization < 1, "rollout.gpu_memory_utilization must be in (0, 1).")
        _check(self.kv_cache_gb >= 0, "rollout.kv_cache_gb must be >= 0 (0: rows per chunk from batch_size only).")


@dataclass
class TrainConfig:
    """One training run. ``method`` picks FR3E or GRPO++; both run in the same trainer."""

    name: str = _help("Run name (the run directory defaults to runs/<name>).", "run")
    profile: str = _help("'tiny' (CPU, embedded world) or 'paper' (Qwen2.5 on GPUs).", "tiny")
    method: str = _help("'fr3e' or 'grpo_pp' (states = {S_0}, modulation none).", "fr3e")
    seed: int = _help("Seed for data order, sampling and initialisation.", 0)
    steps: int = _help("Training steps (one rollout batch each).", 100)
    eval_every: int = _help("Evaluate every N steps (0 = only at the end).", 0)
    checkpoint_every: int = _help("Checkpoint every N steps (the last step is always saved).", 25)
    sample_every: int = _help("Write a few annotated trajectories to samples.jsonl every N steps.", 10)
    probe_every: int = _help(
        "Measure the policy's entropy on a fixed probe set every N steps, and before the first and after the "
        "last step (probe.jsonl); 0 = never. Our choice: the entropy claim compares both methods on the same "
        "prompts and n, which the training metrics cannot (FR3E trains on continuations, GRPO++ on rollouts).", 0)
    probe_prompts: int = _help("Prompts of the probe set: the first N training prompts of a fixed seed.", 16)
    probe_n: int = _help("Responses sampled per probe prompt (T = rollout.temperature, top_p = rollout.top_p).", 4)
    distributed_timeout_s: int = _help(
        "Seconds a process waits in a collective (gather, reduce, barrier, FSDP forward) before the run fails. "
        "Our choice: 1800 (torch's default is 600, too short for a checkpoint of a 32B model); the CPU "
        "rehearsal sets a few seconds so that a hang fails fast.", 1800)
    reward: str = _help(
        "'verifier' (math-verify on prefix ⊕ continuation, paper) or 'coin': a fair coin per rollout, "
        "ignoring the answer (control: what RL without signal does to the model; Shao et al. 2025 report "
        "spurious rewards recovering most of the gain on Qwen2.5-Math).", "verifier")
    rehearsal_zero_reward_rank: int = _help(
        "Rehearsal only: this process scores every rollout 0, so it has no signal-carrying group and fewer "
        "micro-batches than the others (tests that uneven ranks do not hang). -1 = off (always, in real runs).",
        -1)
    report_to: str = _help(
        "Live dashboards: 'none', 'tensorboard' (run_dir/tensorboard/), 'wandb' (WANDB_MODE=offline works "
        "without a network), or several as a list or 'tensorboard,wandb'. Our choice: 'none' (metrics.jsonl "
        "is always written). Not part of the run's identity: it may change on resume.", "none")
    model: ModelConfig = _help("The policy to start from and its dtype.", factory=ModelConfig)
    data: DataConfig = _help("Training prompts, batch target, lengths, evaluation sets.", factory=DataConfig)
    rollout: RolloutConfig = _help("Rollout engine and sampling parameters.", factory=RolloutConfig)
    fr3e: FR3EConfig = _help("FR3E-specific settings (ignored by grpo_pp).", factory=FR3EConfig)
    grpo: GRPOConfig = _help("GRPO++ settings; dynamic sampling and advantage scale apply to both methods.",
                             factory=GRPOConfig)
    optim: OptimConfig = _help("Loss and optimizer.", factory=OptimConfig)

    def __post_init__(self) -> None:
        _check_choice("", "profile", self.profile, PROFILES)
        _check_choice("", "method", self.method, METHODS)
        _check_choice("", "reward", self.reward, REWARDS)
        if isinstance(self.report_to, (list, tuple)):  # a YAML list: kept as one comma-separated string
            self.report_to = ",".join(str(t) for t in self.report_to) or "none"
        targets = [t.strip() for t in str(self.report_to or "none").split(",")]
        self.report_to = ",".join(targets)
        _check(targets == ["none"] or all(t in REPORT_TARGETS for t in targets),
               f"report_to={self.report_to!r}: use 'none' or any of {list(REPORT_TARGETS)} (a list or "
               "comma-separated).")
        _check(self.steps >= 1, f"steps={self.steps}: train for at least 1 step.")
        _check(self.checkpoint_every >= 1, "checkpoint_every must be >= 1.")
        _check(self.eval_every >= 0 and self.sample_every >= 0, "eval_every and sample_every must be >= 0.")
        _check(self.probe_every >= 0 and self.probe_prompts >= 1 and self.probe_n >= 1,
               f"probe_every={self.probe_every}, probe_prompts={self.probe_prompts}, probe_n={self.probe_n}: use "
               "probe_every >= 0 (0 = off), probe_prompts >= 1 and probe_n >= 1.")
        _check(self.distributed_timeout_s >= 1, f"distributed_timeout_s={self.distributed_timeout_s}: use >= 1 "
               "second (1800 on GPU nodes; a few seconds in CPU rehearsals).")

    # ------------------------------------------------------------------ derived values
    @property
    def continuation_budget(self) -> int:
        return self.fr3e.continuation_max_tokens or self.data.max_response_tokens

    @property
    def max_sequence_tokens(self) -> int:
        """The longest sequence a step can sample: a prompt, then (FR3E) a base response up to an anchor, then a
        continuation. The vLLM engine sizes its context and KV cache for this, not for the model's full context."""
        response = self.data.max_response_tokens
        if self.method == "fr3e":
            response += self.continuation_budget
        return self.data.max_prompt_tokens + response

    @property
    def modulation(self) -> str:
        return self.fr3e.modulation if self.method == "fr3e" else "none"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """A short hash of the resolved config (names a run's identity, not its name)."""
        import hashlib

        payload = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------- I/O
def _field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _unknown_key(cls, key: str, where: str) -> ConfigError:
    valid = _field_names(cls)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    loc = f"{where}." if where else ""
    return ConfigError(f"unknown config key '{loc}{key}'.{hint} Valid keys here: {', '.join(valid)}.")


def from_dict(cls, data: dict | None, where: str = ""):
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys with the closest valid one."""
    data = dict(data or {})
    kwargs = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in fields:
            raise _unknown_key(cls, key, where)
        sub = _dataclass_type(cls, key)
        path = f"{where}.{key}" if where else key
        if sub is not None:
            if not isinstance(value, dict):
                raise ConfigError(f"{path} must be a mapping of its fields, got {value!r}.")
            kwargs[key] = from_dict(sub, value, path)
        else:
            kwargs[key] = _typed(value, _default_of(fields[key]), path)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - defensive, from_dict checks names first
        raise ConfigError(f"{where or 'config'}: {exc}") from exc


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _typed(value: Any, default: Any, path: str) -> Any:
    """Check a YAML value against the type of the field's default (ints widen to floats)."""
    if default is None or value is None:
        return value
    if path == "report_to" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value  # the one field that also takes a list of names
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                ok = False
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{path}={value!r} should be a {type(default).__name__} (like the default {default!r}).")
    return value


_NESTED = {"model": ModelConfig, "data": DataConfig, "rollout": RolloutConfig, "fr3e": FR3EConfig,
           "grpo": GRPOConfig, "optim": OptimConfig}


def _dataclass_type(cls, key: str):
    if cls is TrainConfig:
        return _NESTED.get(key)
    return None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: where (line, column, 1-based) and what, then the fix."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "somewhere"
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    what = f"{context}, {what}" if context else what
    return (f"YAML syntax error at {where}: {what}. Fix that line (each field is 'key: value', nested fields "
            "indented by the same spaces, no tabs); reproduce/configs/tiny-fr3e.yaml is a working example.")


def _yaml_value(text: str) -> Any:
    """A ``--set`` value parsed as YAML, with a one-line error."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"{text!r} is not valid YAML; quote it or write it as in a recipe (a number, "
                          "true/false, a word, [a, b] or {a: b}).") from None


def _coerce(text: str, current: Any) -> Any:
    """Parse a ``--set`` value with YAML, then check it matches the type of the current value."""
    value = _yaml_value(text)
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"expected true/false, got {text!r}")
    elif isinstance(current, float) and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            value = float(value)  # YAML 1.1 reads "1e-4" as a string
        except ValueError:
            raise ConfigError(f"expected a float, got {text!r}") from None
    elif current is not None and not isinstance(value, type(current)):
        raise ConfigError(f"expected a {type(current).__name__}, got {text!r}")
    return value


def apply_overrides(config: TrainConfig, overrides: list[str] | None) -> TrainConfig:
    """Apply ``key=value`` overrides (dotted keys, e.g. ``fr3e.num_anchors=2``) and re-validate."""
    data = config.to_dict()
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. optim.lr=1e-4.")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node, cls = data, TrainConfig
        for i, part in enumerate(parts):
            if cls is None:  # inside a mapping field (data.local_files): any key, the value as YAML
                if i != len(parts) - 1:
                    raise ConfigError(f"override {key}: {'.'.join(parts[:i + 1])} is a value, not a section.")
                try:
                    node[part] = _yaml_value(text)
                except ConfigError as exc:
                    raise ConfigError(f"override {key}: {exc}") from None
                break
            if part not in node:
                raise _unknown_key(cls, part, ".".join(parts[:i]))
            section = _dataclass_type(cls, part)
            if i == len(parts) - 1:
                if section is not None:
                    raise ConfigError(f"{key} is a section; set one of its fields, e.g. {key}.{next(iter(node[part]))}=...")
                try:
                    node[part] = _coerce(text, node[part])  # a mapping field takes a YAML mapping: {a: b}
                except ConfigError as exc:
                    raise ConfigError(f"override {key}: {exc}") from None
            else:
                if not isinstance(node[part], dict):
                    raise ConfigError(f"{'.'.join(parts[:i + 1])} is a value, not a section.")
                cls = section  # None: a mapping field such as data.local_files (name -> path)
                node = node[part]
    return from_dict(TrainConfig, data)


CHECKOUT_RECIPES = Path(__file__).resolve().parents[2] / "reproduce" / "configs"
PACKAGED_RECIPES = Path(__file__).resolve().parents[1] / "recipes"
"""The recipes live in `reproduce/configs/` of a source checkout; the wheel ships the same files as the package
data `fr3e/recipes/` (pyproject.toml maps one onto the other), so an installed package finds them too."""


def recipe_dir() -> Path:
    """The folder of the shipped recipes: the checkout's `reproduce/configs/`, else the installed copy."""
    return CHECKOUT_RECIPES if CHECKOUT_RECIPES.is_dir() else PACKAGED_RECIPES


def resolve_recipe(path: str | Path) -> Path:
    """`path` when it exists; else a shipped recipe it names: `tiny-fr3e`, `tiny-fr3e.yaml`,
    `table1/qwen2.5-7b-fr3e.yaml` or the checkout-relative `reproduce/configs/tiny-fr3e.yaml`."""
    path = Path(path)
    if path.exists():
        return path
    rel = path.as_posix().removeprefix("./").removeprefix("reproduce/configs/")
    for candidate in (recipe_dir() / rel, recipe_dir() / f"{rel}.yaml"):
        if candidate.is_file():
            return candidate
    return path


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML recipe (nested like :class:`TrainConfig`), apply overrides, validate. `path` may also name
    a shipped recipe (`tiny-fr3e`, `table1/qwen2.5-7b-fr3e`; see :func:`resolve_recipe`)."""
    path = resolve_recipe(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; see reproduce/configs/ for the recipes.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {_yaml_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc}); pass a YAML recipe such as "
                          "reproduce/configs/tiny-fr3e.yaml.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config sections.")
    try:
        config = from_dict(TrainConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return apply_overrides(config, overrides)


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (or JSON when the suffix is .json), atomically."""
    from fr3e.utils.io import atomic_write_text

    path = Path(path)
    if path.suffix == ".json":
        text = json.dumps(config.to_dict(), indent=2, sort_keys=True)
    else:
        text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    atomic_write_text(path, text)


def diff_configs(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ between two config dicts (for refusing a resume)."""
    out = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        if not prefix and key in NOT_RUN_IDENTITY:
            continue
        va, vb = a.get(key), b.get(key)
        if (key in a) != (key in b) and name in ABSENT_MEANS_DEFAULT and (va if key in a else vb) == _default(name):
            continue
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(diff_configs(va, vb, name + "."))
        elif va != vb:
            out.append(f"{name}: {va!r} -> {vb!r}")
    return out


def _default(name: str) -> Any:
    """The default of a dotted field name, e.g. 'fr3e.adaptive_budget' -> False."""
    section, _, key = name.rpartition(".")
    cls = _NESTED[section] if section else TrainConfig
    return _default_of(next(f for f in dataclasses.fields(cls) if f.name == key))


def field_help(cls) -> dict[str, str]:
    """The help line of every field of a config dataclass (used by docs and tests)."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
