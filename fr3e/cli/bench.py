"""Throughput and step-time benchmark of the tiny profile (`make bench`).

Three measurements, each a function returning a plain dict (reproduce/bench.py prints them as one table and
writes them as JSON):

- `engine_throughput`: generated tokens/s of `HFEngine` at batch 256 (prompts × n rows), median of repeats.
- `step_breakdown`: a few-step `fr3e.training.trainer.train` run of a recipe into a temporary run directory; the
  per-phase timers of its metrics rows (generate, score, forward, backward, other) averaged after dropping
  the warm-up step(s), with tokens per step (generated, prefill, trained). "Bookkeeping" = time_other /
  time_step: everything the trainer does outside the four timed phases (target < 10%).
- `trl_step_time`: TRL's `GRPOTrainer` on the same warm-started model, configured as our GRPO++ step
  (loss "dapo" with ε 0.2 / 0.28, β = 0, scale_rewards "none" like our advantage_scale, G generations per
  prompt, `prompts_per_step × G` completions per generation batch, `steps_per_generation = updates_per_batch`
  optimizer steps on it, same completion budget, lr, weight decay, grad clip, constant schedule, T = 1),
  rewarded by `fr3e.method.rewards.reward`. Its time per
  generation batch is comparable to our step time with dynamic sampling off (equal completions).

What still differs between the two GRPO++ steps (reported, not hidden): rollouts (ours: `HFEngine`, a KV-cached
loop that prefills each prompt once and drops finished rows; TRL: `model.generate` over every row until the
longest ends), the loss (ours adds the dual clip c = 3 of the recipes; TRL has none), per-step normalisation
with several updates per batch (see tests/test_trl_equivalence.py), and the samples themselves (different
RNG streams, so completion lengths differ a little: both are reported).

Timings on a shared CPU are noisy: the load average is recorded before and after every measurement.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

PHASES = ("generate", "score", "forward", "backward", "other")
TOKEN_KEYS = ("gen_tokens", "prefill_tokens", "trained_tokens", "rollouts_trained", "prompts_used",
              "refill_rounds")
# Keep the few-step benchmark runs cheap: no samples, one periodic-eval-free run, a one-problem final eval.
BENCH_OVERRIDES = ("eval_every=0", "sample_every=0", "data.eval_problems=1", "data.eval_n=1",
                   "data.eval_benchmarks=[easy]")


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (empty where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux/macOS
        return []


def _load_model(model_dir: str | Path):
    from transformers import AutoModelForCausalLM

    from fr3e.tasks.tokenizer import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    return model, load_tokenizer(model_dir)


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


# ------------------------------------------------------------------------------------------ engine
def engine_throughput(
    model_dir: str | Path,
    num_prompts: int = 32,
    n: int = 8,
    max_new_tokens: int = 96,
    temperature: float = 1.0,
    batch_size: int = 256,
    repeats: int = 3,
    seed: int = 0,
) -> dict:
    """Generated tokens/s of `HFEngine` on `num_prompts × n` rows (one chunk at the default 256), median of
    `repeats` timed calls after one short warm-up call. Prompts: the first training problems of the tiny task.
    """
    from fr3e.engines.hf import HFEngine
    from fr3e.tasks.arithmetic import make_split

    model, tokenizer = _load_model(model_dir)
    prompts = [tokenizer(p).input_ids for p in make_split("train", num_prompts, seed=0)["prompt"]]
    engine = HFEngine(model, tokenizer, batch_size=batch_size)
    engine.generate(prompts, n=n, max_new_tokens=8, temperature=temperature, seed=seed)  # warm-up
    load_before = load_average()
    runs = []
    for r in range(repeats):
        t0 = time.perf_counter()
        out = engine.generate(prompts, n=n, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed + r + 1)
        seconds = time.perf_counter() - t0
        tokens = sum(len(c.token_ids) for row in out for c in row)
        runs.append({"seconds": seconds, "generated_tokens": tokens, "tokens_per_s": tokens / seconds})
    rates = [x["tokens_per_s"] for x in runs]
    return {
        "tokens_per_s": statistics.median(rates),
        "rows": num_prompts * n, "num_prompts": num_prompts, "n": n, "batch_size": batch_size,
        "max_new_tokens": max_new_tokens, "temperature": temperature,
        "mean_length": statistics.fmean(x["generated_tokens"] for x in runs) / (num_prompts * n),
        "runs": runs, "load_before": load_before, "load_after": load_average(),
    }


# ------------------------------------------------------------------------------------- our trainer
def step_breakdown(
    recipe: str | Path,
    steps: int = 5,
    overrides: list[str] | tuple[str, ...] = (),
    warmup: int = 1,
    cache_dir: str | Path = "runs/cache",
    run_dir: str | Path | None = None,
) -> dict:
    """Per-phase step time of a `steps`-step `fr3e.training.trainer.train` run of `recipe` (YAML) with `overrides`.

    The run goes to a fresh temporary directory (or `run_dir`, which must not hold a finished run).
    The first `warmup` steps are dropped; the rest are averaged. Returns seconds per phase (mean), their
    shares of the step, time_step mean ± std, tokens per step and the bookkeeping share time_other/time_step.
    """
    from fr3e.training.config import load_config
    from fr3e.training.trainer import train
    from fr3e.utils.io import read_jsonl

    if steps <= warmup:
        raise ValueError(f"steps={steps} must exceed warmup={warmup} (the warm-up steps are dropped)")
    config = load_config(recipe, [*BENCH_OVERRIDES, f"steps={steps}", f"checkpoint_every={steps}", *overrides])
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="fr3e-bench-") as tmp:
        path = Path(run_dir) if run_dir is not None else Path(tmp) / config.name
        t0 = time.perf_counter()
        train(config, run_dir=path, progress=False, cache_dir=cache_dir)
        wall = time.perf_counter() - t0
        rows = read_jsonl(path / "metrics.jsonl")
    timed = rows[warmup:]
    step_s, step_std = _mean_std([r["time_step"] for r in timed])
    phases = {p: statistics.fmean(r[f"time_{p}"] for r in timed) for p in PHASES}
    tokens = {k: statistics.fmean(r.get(k, 0) for r in timed) for k in TOKEN_KEYS}
    # Continuation tokens that received gradient, from the rows' own mean length × count (the trainer's
    # `trained_tokens` field divides this by optim.updates_per_batch).
    tokens["trained_tokens_total"] = statistics.fmean(
        r["continuation_length"] * r["rollouts_trained"] if r["rollouts_trained"] else 0.0 for r in timed)
    return {
        "recipe": str(recipe), "method": config.method, "overrides": list(overrides), "steps": steps,
        "warmup": warmup, "timed_steps": len(timed),
        "prompts_per_step": config.data.prompts_per_step,
        "group_size": config.fr3e.continuations_per_state if config.method == "fr3e" else config.grpo.rollouts_per_prompt,
        "dynamic_sampling": config.grpo.dynamic_sampling, "updates_per_batch": config.optim.updates_per_batch,
        "step_s": step_s, "step_s_std": step_std, "phases_s": phases,
        "phase_shares": {p: phases[p] / step_s for p in PHASES},
        "bookkeeping_share": phases["other"] / step_s,
        "tokens": tokens, "completions_per_step": tokens["rollouts_trained"],
        "mean_completion_length": tokens["trained_tokens_total"] / max(tokens["rollouts_trained"], 1),
        "generated_tokens_per_s": tokens["gen_tokens"] / phases["generate"] if phases["generate"] else float("nan"),
        "per_step_s": [r["time_step"] for r in rows], "run_wall_s": wall,
        "load_before": load_before, "load_after": load_average(),
    }


# ---------------------------------------------------------------------------------------------- TRL
def _trl_reward(completions, answer, **kwargs) -> list[float]:
    """TRL reward function: `fr3e.method.rewards.reward` of each completion against its row's gold answer."""
    from fr3e.method.rewards import reward

    return [reward(c, a) for c, a in zip(completions, answer)]


def trl_step_time(
    model_dir: str | Path,
    prompts_per_step: int = 8,
    num_generations: int = 8,
    max_completion_length: int = 96,
    updates_per_batch: int = 2,
    lr: float = 5e-5,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    warmup: int = 1,
    timed: int = 3,
    train_size: int = 4096,
    seed: int = 0,
) -> dict:
    """Seconds per generation batch of TRL's `GRPOTrainer`, set up as our GRPO++ step (module docstring).

    One generation batch = `prompts_per_step × num_generations` completions, trained in `updates_per_batch`
    optimizer steps (TRL `steps_per_generation`). Runs `warmup + timed` batches; the first `warmup` are dropped.
    """
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from fr3e.tasks.arithmetic import make_split

    model, tokenizer = _load_model(model_dir)
    completions = prompts_per_step * num_generations
    if completions % updates_per_batch:
        raise ValueError(f"prompts_per_step × G = {completions} must divide into updates_per_batch={updates_per_batch}")
    batches = warmup + timed
    marks: list[float] = []
    seen: dict[str, list] = {}  # TRL's per-batch metrics, copied before the end-of-training log clears them

    class StepClock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            marks.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            marks.append(time.perf_counter())
            seen.update({k: list(v) for k, v in trainer._metrics["train"].items()})

    dataset = make_split("train", train_size, seed=0).select_columns(["prompt", "answer"])
    with tempfile.TemporaryDirectory(prefix="fr3e-bench-trl-") as tmp:
        args = GRPOConfig(
            output_dir=tmp, loss_type="dapo", epsilon=0.2, epsilon_high=0.28, beta=0.0,
            num_generations=num_generations, per_device_train_batch_size=completions // updates_per_batch,
            steps_per_generation=updates_per_batch, gradient_accumulation_steps=1,
            max_completion_length=max_completion_length, max_steps=batches * updates_per_batch,
            learning_rate=lr, weight_decay=weight_decay, max_grad_norm=grad_clip, lr_scheduler_type="constant",
            use_vllm=False, use_cpu=True, report_to=[], bf16=False, logging_strategy="no", save_strategy="no",
            scale_rewards="none", temperature=1.0, top_p=1.0, seed=seed, disable_tqdm=True, dataloader_num_workers=0)
        trainer = GRPOTrainer(model=model, reward_funcs=_trl_reward, args=args, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[StepClock()])
        for quiet in (PrinterCallback, ProgressCallback):  # keep the bench output to its own table
            trainer.remove_callback(quiet)
        load_before = load_average()
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
    # marks[0] = train begin, marks[k] = end of optimizer step k; one generation batch spans updates_per_batch steps.
    per_batch = [marks[(b + 1) * updates_per_batch] - marks[b * updates_per_batch] for b in range(batches)]
    step_s, step_std = _mean_std(per_batch[warmup:])
    lengths = seen.get("completions/mean_length", [])[warmup:]
    rewards = seen.get("reward", [])[warmup:]
    mean_len = statistics.fmean(lengths) if lengths else float("nan")
    return {
        "step_s": step_s, "step_s_std": step_std, "per_batch_s": per_batch, "warmup": warmup, "timed_batches": timed,
        "completions_per_step": completions, "num_generations": num_generations,
        "prompts_per_step": prompts_per_step, "steps_per_generation": updates_per_batch,
        "max_completion_length": max_completion_length, "mean_completion_length": mean_len,
        "gen_tokens": mean_len * completions, "reward_mean": statistics.fmean(rewards) if rewards else float("nan"),
        "run_wall_s": wall, "load_before": load_before, "load_after": load_average(),
        "config": {"loss_type": "dapo", "epsilon": 0.2, "epsilon_high": 0.28, "beta": 0.0, "scale_rewards": "none", "lr": lr,
                   "weight_decay": weight_decay, "max_grad_norm": grad_clip, "temperature": 1.0},
    }


# -------------------------------------------------------------------------------------------- all
def run_all(
    fr3e_recipe: str | Path = "reproduce/configs/tiny-fr3e.yaml",
    grpo_recipe: str | Path = "reproduce/configs/tiny-grpo_pp.yaml",
    steps: int = 5,
    trl_batches: int = 3,
    engine_repeats: int = 3,
    cache_dir: str | Path = "runs/cache",
    skip_trl: bool = False,
    model_dir: str | Path | None = None,
) -> dict:
    """Every measurement of `make bench`, in order; the FR3E and GRPO++ recipes must share one base model.

    model_dir: a tiny model directory to use instead of the recipes' warm start (which is trained on first use).
    """
    from fr3e.tasks.warm_start import warm_start
    from fr3e.training.config import load_config

    grpo = load_config(grpo_recipe)
    base = [f"model.base={model_dir}"] if model_dir is not None else []
    if model_dir is None:
        model_dir = warm_start(grpo.model.base, cache_dir=cache_dir, progress=False)
    if not Path(model_dir, "tokenizer.json").exists():
        raise FileNotFoundError(f"{model_dir} is not a tiny model directory (no tokenizer.json); pass a directory "
                                "written by fr3e.tasks.warm_start, or leave model_dir unset")
    out = {"model_dir": str(model_dir), "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "load_start": load_average(),
           "versions": _versions()}
    if out["load_start"] and out["load_start"][0] > (os.cpu_count() or 1):
        logger.warning("load average %.1f exceeds the %d CPUs: timings are contended (OpenMP threads spinning "
                       "against other processes slow the tiny model up to ~10x); re-measure on an idle machine, or "
                       "use --threads 1 or OMP_WAIT_POLICY=PASSIVE",
                       out["load_start"][0], os.cpu_count())
    t_all = time.perf_counter()
    logger.info("engine throughput (%s)", model_dir)
    out["engine"] = engine_throughput(model_dir, max_new_tokens=grpo.data.max_response_tokens, repeats=engine_repeats,
                                      batch_size=grpo.rollout.batch_size)
    logger.info("FR3E step breakdown (%d steps)", steps)
    out["fr3e"] = step_breakdown(fr3e_recipe, steps, base, cache_dir=cache_dir)
    logger.info("GRPO++ step breakdown, dynamic sampling off (%d steps)", steps)
    out["grpo_pp_equal"] = step_breakdown(grpo_recipe, steps, [*base, "grpo.dynamic_sampling=false"], cache_dir=cache_dir)
    logger.info("GRPO++ step breakdown, dynamic sampling on (%d steps)", steps)
    out["grpo_pp"] = step_breakdown(grpo_recipe, steps, base, cache_dir=cache_dir)
    if not skip_trl:
        logger.info("TRL GRPOTrainer (%d generation batches after 1 warm-up)", trl_batches)
        out["trl"] = trl_step_time(
            model_dir, prompts_per_step=grpo.data.prompts_per_step, num_generations=grpo.grpo.rollouts_per_prompt,
            max_completion_length=grpo.data.max_response_tokens, updates_per_batch=grpo.optim.updates_per_batch,
            lr=grpo.optim.lr, weight_decay=grpo.optim.weight_decay, grad_clip=grpo.optim.grad_clip,
            timed=trl_batches, train_size=grpo.data.train_size)
        ours = out["grpo_pp_equal"]["step_s"]
        out["ours_over_trl"] = ours / out["trl"]["step_s"]
        # Per generated token as well: the two samplers draw different completions (lengths differ a little).
        ours_per_tok = ours / max(out["grpo_pp_equal"]["tokens"]["gen_tokens"], 1)
        out["ours_over_trl_per_gen_token"] = ours_per_tok / (out["trl"]["step_s"] / max(out["trl"]["gen_tokens"], 1))
    out["wall_s"] = time.perf_counter() - t_all
    out["load_end"] = load_average()
    return out


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for pkg in ("torch", "transformers", "trl", "accelerate"):
        try:
            found[pkg] = version(pkg)
        except PackageNotFoundError:
            found[pkg] = None
    return found


def to_json(result: dict) -> str:
    return json.dumps(result, indent=1, sort_keys=False, default=float)


def main(argv=None) -> int:
    """`python -m fr3e.cli.bench [options]`: the `make bench` command line (reproduce/bench.py) of this checkout.

    The benchmark's recipes live in the checkout's reproduce/configs, so it runs from a checkout, not from an
    installed wheel; without one the answer is one line on stderr and status 2.
    """
    import runpy
    import sys

    script = Path(__file__).resolve().parents[2] / "reproduce" / "bench.py"
    if not script.exists():
        sys.stderr.write(f"error: {script} not found: the benchmark needs a checkout of the repository "
                         "(its recipes live in reproduce/configs); run `python -m fr3e.cli.bench` from one.\n")
        return 2
    return runpy.run_path(str(script))["main"](argv)


if __name__ == "__main__":
    raise SystemExit(main())
