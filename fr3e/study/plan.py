"""The cost plan of the paper-profile Table 1 runs: GPUs, generated tokens, GPU-hours and disk, per run.

`python -m fr3e.cli.plan [--config-dir reproduce/configs/table1] [--gpus 8] [--throughput 7b=3363 ...]` reads
every Table 1 recipe and prints one line per run and a total. It needs no GPU and no network. The paper
publishes no cost, GPU count or step count (nor do its reviews or the authors' code); every number below is an estimate from stated
assumptions (:class:`Assumptions`), each with its source, so a reader can redo it with their own.

Formulas (L = mean response tokens, p = mean prompt tokens, P = prompts per step, S = steps):
- GRPO++ generated tokens = S · P · G · L · (1 + r), with G rollouts per prompt and r the expected extra
  generation of dynamic sampling (refills replacing all-right / all-wrong groups).
- FR3E generated tokens = S · P · (B · L + k · K · M · c · L + M · L) · (1 + r): B base trajectories,
  k kept trajectories (keep_right + keep_wrong, an upper bound), K anchors, M continuations per state,
  c · L the mean continuation from an anchor state (c = 0.5: anchors spread over the response), and M
  full-length continuations from the shared S_0.
- Eval tokens = (Σ benchmark problems) · n · L · evaluations.
- Trained tokens (forward + backward) = S · P · groups · (p + L) sequences' tokens: GRPO++ groups = G;
  FR3E groups = (k · K + 1) · M (every state group survives: an upper bound). A continuation from S_j
  is trained inside its full sequence prompt ⊕ prefix ⊕ continuation ≈ p + L tokens.
- Training FLOPs = (6 + 2·[gradient checkpointing] + 2) · params · trained tokens + 2 · params · entropy
  tokens: forward+backward, the recomputed forward of checkpointing, one no-grad forward for old
  log-probs; FR3E adds an entropy forward over its kept base trajectories (S · P · k · (p + L) tokens).
- GPU-hours = generated tokens / (vLLM throughput per GPU) / 3600 + training FLOPs / (peak · MFU) / 3600.
  Prefill is not counted (prefix caching serves the M continuations of a state from one prefill).
- GPUs: the smallest multiple of `--gpus` whose per-GPU memory fits: FSDP full shard of fp32 master
  weights + fp32 grads + Adam (16 bytes/param) / GPUs, plus the larger of (training activations + the
  log-prob peak with gradients) and (the colocated vLLM engine: bf16 weights / tensor-parallel degree + KV
  cache, + the log-prob peak of a no-grad forward, which runs while vLLM is awake: the first-return
  entropy pass); vLLM sleeps during the backward passes. Log-prob peak of one micro-batch of R rows × T
  tokens (`logits_gb`): the output layer is applied to one slice of c = min(512, T) positions at a time
  (`fr3e.training.policy._LogprobHead`), so the peak is one slice's temporaries, R·c·V elements, measured with
  PyTorch's live-tensor tracker (`torch.distributed._tools.mem_tracker.MemTracker`, on CPU, activations and
  temporaries, fp32 and bf16 models alike): 12 bytes per element for a no-grad pass with entropy, 22 with
  gradients (the slice is recomputed in the backward pass beside its gradient). tests/test_logprob_memory.py
  holds this term within 15% of that measurement for several shapes.
  (Before, the model's full
  R·T·V bf16 logits and, with gradients, their gradient existed at once: 2 × 8 rows × 7k × 152k × 2 B ≈ 35 GB
  at 7B; before that, an fp32 copy and a log_softmax of the full logits: ≈ 50 GB.)
- Disk = params · 4 bytes · (1 + 2 Adam states) · checkpoints kept + one bf16 export (2 bytes/param).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from fr3e.training.config import TrainConfig, load_config

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_DIR = Path("reproduce/configs/table1")

MODEL_PARAMS = {
    "Qwen/Qwen2.5-7B": 7.61e9,  # Qwen2.5-7B model card: 7.61B parameters
    "Qwen/Qwen2.5-Math-7B": 7.61e9,  # same architecture as Qwen2.5-7B (Qwen2.5-Math report)
    "Qwen/Qwen2.5-32B": 32.5e9,  # Qwen2.5-32B model card: 32.5B parameters
    "Qwen/Qwen2.5-Math-1.5B": 1.54e9,  # Qwen2.5-Math-1.5B model card: 1.54B parameters (the one-GPU profile)
}
"""Parameter counts of the Table 1 models (model cards)."""


@dataclass(frozen=True)
class Assumptions:
    """Everything the plan assumes; defaults cite their source. Pass your own to `estimate_run`."""

    mean_response_tokens: dict[str, float] = field(default_factory=lambda: {
        "Qwen/Qwen2.5-7B": 1500.0,  # our guess: between SimpleRL-Zoo's ~1k zero-RL lengths and the 3072 cap
        "Qwen/Qwen2.5-Math-7B": 2500.0,  # paper Fig. 4: Math-7B response length plateaus near 2.5k
        "Qwen/Qwen2.5-32B": 1500.0,  # our guess, as Qwen2.5-7B
        "Qwen/Qwen2.5-Math-1.5B": 600.0,  # our guess: under the one-GPU recipe's 1,024-token cap
    })
    default_response_tokens: float = 1500.0  # our guess, for models not listed above
    mean_prompt_tokens: float = 150.0  # our guess: a competition problem + instruction + chat template
    continuation_fraction: float = 0.5  # c: anchors spread over the response, so continuations are ~L/2
    refill_fraction: float = 0.5  # r: our guess, dynamic sampling re-generates ~half a batch more
    throughput: dict[str, float] = field(default_factory=lambda: {
        # vLLM generated tokens/s per GPU, 1 × A100-80GB, default config, from the table of third-party
        # benchmarks at morphllm.com/vllm-benchmarks (2026): DeepSeek-R1-Distill-Qwen-7B 3,363 tok/s,
        # -Qwen-32B 577 tok/s (Qwen2 architecture, long reasoning outputs: close to our workload).
        "7b": 3363.0,
        "32b": 577.0,
        # The one-GPU profile's HF engine at 1.5B, our guess: the engine measured 16.3k tok/s on FR3E-shaped
        # rollouts at the 0.5B layout on an H200 (reproduce/bench_gpu.md); ~3x the FLOPs per token at 1.5B.
        "1.5b": 5000.0,
    })
    gpu_name: str = "A100-80GB"  # the GPU the throughput numbers were measured on
    peak_flops: float = 312e12  # A100 dense bf16 peak, NVIDIA data sheet (H100 SXM: 989e12)
    mfu: float = 0.35  # our guess: typical FSDP + gradient checkpointing utilisation for 7-32B
    gpu_memory_gb: float = 80.0
    memory_headroom: float = 0.9  # our choice: plan for 90% of GPU memory (CUDA context, fragmentation)
    activation_gb: float = 10.0  # our guess: checkpointed activations of a few 4k-token micro-batches
    kv_cache_gb: float = 10.0  # our choice: KV cache left to vLLM inside gpu_memory_utilization
    train_state_bytes: float = 16.0  # fp32 master (4) + fp32 grads (4) + Adam m, v (8) bytes per param
    checkpoint_bytes: float = 4.0  # fp32 weights in a checkpoint
    adam_states: int = 2  # Adam's m and v, each as large as the weights
    checkpoints_kept: int = 2  # our choice: the last checkpoint and the one before it
    export_bytes: float = 2.0  # one final bf16 export for evaluation
    benchmark_sizes: dict[str, int] = field(default_factory=lambda: _benchmark_sizes())
    gpus_per_node: int = 8
    vocab_size: int = 152064  # Qwen2.5 config.json (all three Table 1 models)
    logprob_chunk: int = 512  # fr3e.training.policy.LOGPROB_CHUNK: positions per slice of the output layer


def _benchmark_sizes() -> dict[str, int]:
    from fr3e.data.paper import DATASETS

    return {name: spec.rows or 0 for name, spec in DATASETS.items()}


# ----------------------------------------------------------------------------------- pure estimates
def model_params(base: str) -> float:
    """Parameter count of `base`: the table above, else read from a size in the name ("...-14B")."""
    if base in MODEL_PARAMS:
        return MODEL_PARAMS[base]
    match = re.search(r"(\d+(?:\.\d+)?)\s*[bB]\b", base.replace("_", "-"))
    if not match:
        raise ValueError(f"unknown model size for {base!r}; add it to fr3e.study.plan.MODEL_PARAMS.")
    return float(match.group(1)) * 1e9


def size_class(params: float, classes: dict[str, float]) -> str:
    """The throughput class ("7b", "32b", ...) whose size is nearest to `params` (log scale)."""
    sizes = {name: model_params(name) for name in classes}
    return min(sizes, key=lambda name: abs(math.log(sizes[name] / params)))


def evaluations(steps: int, eval_every: int) -> int:
    """Evaluations in a run: every `eval_every` steps plus a final one (0 = only the final one)."""
    if eval_every <= 0:
        return 1
    return steps // eval_every + (1 if steps % eval_every else 0)


LOGPROB_SLICE_BYTES = {False: 12, True: 22}
"""Bytes per element of one slice of logits at the log-prob pass's peak, without / with gradients, as PyTorch's
live-tensor tracker measures them on CPU (module docstring; tests/test_logprob_memory.py)."""


def logits_gb(rows: int, tokens: int, vocab: int, chunk: int, grad: bool) -> float:
    """Peak GB of the log-probs of one micro-batch (`fr3e.training.policy.token_logprobs`): the temporaries of one
    slice of rows · min(chunk, tokens) positions over the vocabulary, `LOGPROB_SLICE_BYTES` each. No full
    (rows, tokens, vocab) tensor exists in the forward or the backward."""
    return rows * min(chunk, tokens) * vocab * LOGPROB_SLICE_BYTES[grad] / 1e9


def gpus_needed(params: float, tensor_parallel: int, a: Assumptions, step: int, logits_train_gb: float = 0.0,
                logits_nograd_gb: float = 0.0) -> tuple[int, float]:
    """Smallest multiple of `step` GPUs whose per-GPU peak memory fits; returns (gpus, GB per GPU)."""
    usable = a.gpu_memory_gb * a.memory_headroom
    vllm_gb = 2 * params / tensor_parallel / 1e9 + a.kv_cache_gb
    for n in range(step, 1025, step):
        if n % tensor_parallel:
            continue
        per_gpu = a.train_state_bytes * params / n / 1e9 + max(a.activation_gb + logits_train_gb,
                                                                vllm_gb + logits_nograd_gb)
        if per_gpu <= usable:
            return n, per_gpu
    raise ValueError(f"a {params / 1e9:.1f}B model does not fit in 1024 GPUs under these assumptions.")


def estimate_run(config: TrainConfig, assumptions: Assumptions | None = None) -> dict:
    """Tokens, GPU-hours, GPUs and disk of one run (see the module docstring for every formula)."""
    a = assumptions or Assumptions()
    params = model_params(config.model.base)
    L = a.mean_response_tokens.get(config.model.base, a.default_response_tokens)
    p = a.mean_prompt_tokens
    S, P = config.steps, config.data.prompts_per_step
    refill = 1 + (a.refill_fraction if config.grpo.dynamic_sampling else 0.0)
    f = config.fr3e
    if config.method == "grpo_pp":
        G = config.grpo.rollouts_per_prompt
        generated_per_prompt = G * L
        trained_groups = G
        entropy_tokens = 0.0
    else:
        kept = f.keep_right + f.keep_wrong
        K, M = f.num_anchors, f.continuations_per_state
        generated_per_prompt = f.base_per_prompt * L + kept * K * M * a.continuation_fraction * L + M * L
        trained_groups = (kept * K + 1) * M
        entropy_tokens = S * P * kept * (p + L)
    train_generated = S * P * generated_per_prompt * refill
    problems = sum(_eval_size(name, config.data.eval_problems, a) for name in config.data.eval_benchmarks)
    n_evals = evaluations(S, config.eval_every)
    eval_generated = problems * config.data.eval_n * L * n_evals
    trained_tokens = S * P * trained_groups * (p + L)
    flops_per_token = 6 + (2 if config.model.gradient_checkpointing else 0) + 2
    train_flops = flops_per_token * params * trained_tokens + 2 * params * entropy_tokens

    klass = size_class(params, {k: v for k, v in a.throughput.items()})
    throughput = a.throughput[klass]
    rollout_gpu_hours = (train_generated + eval_generated) / throughput / 3600
    train_gpu_hours = train_flops / (a.peak_flops * a.mfu) / 3600
    # The longest row the trainer scores (FR3E: prompt ⊕ prefix ⊕ continuation), and the rows of such length one
    # micro-batch holds under the token cap (`optim.micro_batch_tokens`).
    rows, seq = config.optim.micro_batch_size, config.max_sequence_tokens
    if config.optim.micro_batch_tokens:
        rows = min(rows, max(1, config.optim.micro_batch_tokens // seq))
    logits_train = logits_gb(rows, seq, a.vocab_size, a.logprob_chunk, grad=True)
    logits_nograd = logits_gb(rows, seq, a.vocab_size, a.logprob_chunk, grad=False)
    gpus, per_gpu_gb = gpus_needed(params, config.rollout.tensor_parallel_size, a, a.gpus_per_node,
                                   logits_train, logits_nograd)
    gpu_hours = rollout_gpu_hours + train_gpu_hours
    disk_gb = (params * a.checkpoint_bytes * (1 + a.adam_states) * a.checkpoints_kept
               + params * a.export_bytes) / 1e9
    return {
        "run": config.name,
        "model": config.model.base,
        "method": config.method,
        "params": params,
        "gpus": gpus,
        "per_gpu_gb": per_gpu_gb,
        "logits_gb_train": logits_train,
        "logits_gb_nograd": logits_nograd,
        "mean_response_tokens": L,
        "generated_tokens_per_prompt": generated_per_prompt,
        "train_generated_tokens": train_generated,
        "eval_problems": problems,
        "evaluations": n_evals,
        "eval_generated_tokens": eval_generated,
        "generated_tokens": train_generated + eval_generated,
        "trained_tokens": trained_tokens,
        "train_flops": train_flops,
        "throughput_class": klass,
        "throughput": throughput,
        "rollout_gpu_hours": rollout_gpu_hours,
        "train_gpu_hours": train_gpu_hours,
        "gpu_hours": gpu_hours,
        "wall_hours": gpu_hours / gpus,
        "disk_gb": disk_gb,
    }


MODEL_SHAPES = {
    # config.json of each model: layers, hidden size, key/value heads, head dim, vocabulary
    "Qwen/Qwen2.5-7B": dict(layers=28, hidden=3584, kv_heads=4, head_dim=128, vocab=152064),
    "Qwen/Qwen2.5-Math-7B": dict(layers=28, hidden=3584, kv_heads=4, head_dim=128, vocab=152064),
    "Qwen/Qwen2.5-32B": dict(layers=64, hidden=5120, kv_heads=8, head_dim=128, vocab=152064),
    "Qwen/Qwen2.5-Math-1.5B": dict(layers=28, hidden=1536, kv_heads=2, head_dim=128, vocab=151936),
}
"""What the per-phase memory needs of each Table 1 model beyond its size (the models' config.json)."""

ENGINES = ("vllm", "hf")
PHASES = ("collect", "update", "wake-up")


def kv_bytes_per_token(shape: dict, dtype_bytes: int = 2) -> float:
    """Keys and values of one token over every layer, bytes (bf16 by default)."""
    return 2 * shape["layers"] * shape["kv_heads"] * shape["head_dim"] * dtype_bytes


def phase_memory(config: TrainConfig, engine: str, gpus: int, a: Assumptions | None = None) -> dict:
    """GB per GPU in each phase of one step, by term, for `config` on `gpus` GPUs (FSDP full shard) with the
    rollout engine `engine` ('vllm' colocated in sleep mode, or 'hf').

    collect  the engine is awake and samples; the trainer holds its fp32 weights and Adam states (gradients were
             freed after the last update) and runs the no-grad entropy pass over the first-return trajectories.
             vLLM holds `gpu_memory_utilization` of the GPU (weights, KV cache, its activations); the HF engine
             holds an unsharded bf16 copy of the weights and the KV cache of one chunk of rows (`kv_cache_gb`,
             else `batch_size` rows of the longest sequence).
    update   the engine sleeps (vLLM offloads its weights and drops its KV cache; the HF engine frees its copy);
             the trainer adds gradients, checkpointed activations and the log-prob peak with gradients.
    wake-up  after the update, gradients freed and PyTorch's cache returned: the engine's weights come back
             (vLLM's bf16 weights / tensor-parallel degree, or the HF copy) and the new weights are gathered into
             them one full tensor at a time (the largest, the fp32 embedding or output layer, bounds that).
    Returns {"phases": {phase: {term: GB}}, "totals": {phase: GB}, "binding": phase, "fits": bool, "usable_gb": GB}.
    """
    a = a or Assumptions()
    base = config.model.base
    params = model_params(base)
    shape = MODEL_SHAPES.get(base, dict(layers=32, hidden=4096, kv_heads=8, head_dim=128, vocab=a.vocab_size))
    seq = config.max_sequence_tokens
    rows = config.optim.micro_batch_size
    if config.optim.micro_batch_tokens:
        rows = min(rows, max(1, config.optim.micro_batch_tokens // seq))
    weights_adam = 12 * params / gpus / 1e9  # fp32 master weights (4) + Adam m, v (8) per parameter, sharded
    grads = 4 * params / gpus / 1e9
    largest_tensor = shape["vocab"] * shape["hidden"] * 4 / 1e9  # one fp32 embedding / output layer, gathered whole
    nograd = logits_gb(rows, seq, shape["vocab"], a.logprob_chunk, grad=False)
    if engine == "vllm":
        engine_awake = {"vLLM (weights + KV cache + activations)": config.rollout.gpu_memory_utilization
                        * a.gpu_memory_gb}
        engine_weights = {"vLLM weights (bf16 / TP)": 2 * params / config.rollout.tensor_parallel_size / 1e9}
    elif engine == "hf":
        kv = config.rollout.kv_cache_gb or (config.rollout.batch_size * seq * kv_bytes_per_token(shape) / 1e9)
        engine_weights = {"HF engine copy (bf16, unsharded)": 2 * params / 1e9}
        engine_awake = {**engine_weights, "HF engine KV cache (one chunk)": kv}
    else:
        raise ValueError(f"engine {engine!r}: use one of {ENGINES}")
    phases = {
        "collect": {"weights + Adam (fp32, sharded)": weights_adam, **engine_awake,
                    "entropy pass (no grad, one micro-batch)": nograd},
        "update": {"weights + Adam (fp32, sharded)": weights_adam, "gradients (fp32, sharded)": grads,
                   "activations (checkpointed)": a.activation_gb,
                   "log-prob peak (with grad, one micro-batch)": logits_gb(rows, seq, shape["vocab"], a.logprob_chunk,
                                                                          grad=True)},
        "wake-up": {"weights + Adam (fp32, sharded)": weights_adam, **engine_weights,
                    "one gathered full tensor (fp32)": largest_tensor},
    }
    totals = {name: sum(terms.values()) for name, terms in phases.items()}
    binding = max(totals, key=totals.get)
    usable = a.gpu_memory_gb * a.memory_headroom
    return {"phases": phases, "totals": totals, "binding": binding, "fits": totals[binding] <= usable,
            "usable_gb": usable, "gpus": gpus, "engine": engine, "run": config.name}


def format_phases(configs: list[TrainConfig], gpus: int, a: Assumptions | None = None) -> str:
    """One line per recipe and engine: GB per GPU in each phase, the phase that binds, and whether it fits."""
    a = a or Assumptions()
    lines = [f"Memory per GPU by phase on {gpus} × {a.gpu_memory_gb:.0f} GB (usable {a.gpu_memory_gb * a.memory_headroom:.0f} "
             "GB; fr3e.study.plan.phase_memory):",
             f"  {'run':32}{'engine':>7}{'collect':>9}{'update':>8}{'wake-up':>9}  {'binds':8}fits"]
    for config in configs:
        for engine in ENGINES:
            m = phase_memory(config, engine, gpus, a)
            t = m["totals"]
            lines.append(f"  {config.name:32}{engine:>7}{t['collect']:>9.1f}{t['update']:>8.1f}{t['wake-up']:>9.1f}  "
                         f"{m['binding']:8}{'yes' if m['fits'] else 'NO'}")
    return "\n".join(lines)


def _eval_size(name: str, limit: int, a: Assumptions) -> int:
    size = a.benchmark_sizes.get(name)
    if size is None:
        raise ValueError(f"benchmark {name!r} has no known size; add it to Assumptions.benchmark_sizes.")
    return min(size, limit) if limit > 0 else size


def total(rows: list[dict]) -> dict:
    """Sum of the additive columns of `estimate_run` rows (GPUs: the largest single run)."""
    keys = ("train_generated_tokens", "eval_generated_tokens", "generated_tokens", "trained_tokens",
            "rollout_gpu_hours", "train_gpu_hours", "gpu_hours", "disk_gb")
    out = {k: sum(r[k] for r in rows) for k in keys}
    out["gpus"] = max((r["gpus"] for r in rows), default=0)
    out["wall_hours"] = sum(r["wall_hours"] for r in rows)  # runs one after another
    return out


def _giga(x: float) -> str:
    return f"{x / 1e9:,.2f}"


def format_table(rows: list[dict], a: Assumptions) -> str:
    """The plan as fixed-width text: one line per run, a total line, then the assumptions."""
    head = ("run", "GPUs", "GB/GPU", "gen Gtok", "eval Gtok", "train Gtok", "rollout GPU-h", "train GPU-h",
            "GPU-h", "wall h", "disk GB")
    lines = []
    for r in rows:
        lines.append((r["run"], str(r["gpus"]), f"{r['per_gpu_gb']:.0f}", _giga(r["train_generated_tokens"]),
                      _giga(r["eval_generated_tokens"]), _giga(r["trained_tokens"]),
                      f"{r['rollout_gpu_hours']:,.0f}", f"{r['train_gpu_hours']:,.0f}", f"{r['gpu_hours']:,.0f}",
                      f"{r['wall_hours']:,.1f}", f"{r['disk_gb']:,.0f}"))
    t = total(rows)
    lines.append(("TOTAL (runs in sequence)", f"max {t['gpus']}", "", _giga(t["train_generated_tokens"]),
                  _giga(t["eval_generated_tokens"]), _giga(t["trained_tokens"]), f"{t['rollout_gpu_hours']:,.0f}",
                  f"{t['train_gpu_hours']:,.0f}", f"{t['gpu_hours']:,.0f}", f"{t['wall_hours']:,.1f}",
                  f"{t['disk_gb']:,.0f}"))
    widths = [max(len(row[i]) for row in [head, *lines]) for i in range(len(head))]

    def fmt(row):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    rule = "-" * len(fmt(head))
    out = [fmt(head), rule, *[fmt(x) for x in lines[:-1]], rule, fmt(lines[-1]), ""]
    tp = ", ".join(f"{k}: {v:,.0f} tok/s" for k, v in a.throughput.items())
    lengths = ", ".join(f"{k.split('/')[-1]}: {v:,.0f}" for k, v in a.mean_response_tokens.items())
    out += [
        "Assumptions (fr3e.study.plan.Assumptions; see its docstring for the formulas and sources):",
        f"  vLLM throughput per {a.gpu_name} ({tp}); training at {a.mfu:.0%} MFU of "
        f"{a.peak_flops / 1e12:,.0f} TFLOP/s bf16",
        f"  mean response tokens ({lengths}); prompt {a.mean_prompt_tokens:,.0f}; dynamic-sampling refill "
        f"+{a.refill_fraction:.0%}; continuation from an anchor = {a.continuation_fraction:.0%} of a response",
        f"  GPUs = smallest multiple of {a.gpus_per_node} fitting {a.gpu_memory_gb:.0f} GB × "
        f"{a.memory_headroom:.0%}; disk keeps {a.checkpoints_kept} checkpoints (fp32 weights + Adam) + a bf16 export",
        "  gen = training rollouts (incl. FR3E base trajectories), eval = Table 1 benchmarks at n=16, "
        "train = tokens through forward+backward",
    ]
    return "\n".join(out)


def load_recipes(config_dir: str | Path) -> list[TrainConfig]:
    """Every `*.yaml` recipe under `config_dir`, sorted by file name."""
    config_dir = Path(config_dir)
    paths = sorted(config_dir.glob("*.yaml"))
    if not paths:
        raise FileNotFoundError(f"no *.yaml recipes in {config_dir}; pass --config-dir reproduce/configs/table1.")
    return [load_config(p) for p in paths]


def _parse_throughput(items: list[str] | None, base: dict[str, float]) -> dict[str, float]:
    out = dict(base)
    for item in items or []:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            if not sep:
                raise SystemExit(f"--throughput {part!r}: use size=tokens_per_second, e.g. --throughput 7b=3363")
            out[key.strip().lower()] = float(value)
    return out
