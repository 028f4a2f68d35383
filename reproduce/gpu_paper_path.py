"""The paper path's fixes on a CUDA GPU: log-prob memory at a 0.5B shape, and a paper-profile run in bf16.

    python reproduce/gpu_paper_path.py --out DIR [--rows 4] [--tokens 4096]

1. Memory of the log-prob pass on a random Qwen2 in the Qwen2.5-0.5B
   layout (vocab 151,936), bf16: peak GPU memory of the former computation (fp32 copy of the full logits,
   full log_softmax, entropy) against `fr3e.training.trainer.token_logprobs` (slices of 512 positions), without and
   with gradients, for `rows` × `tokens`.
2. A Table 1 recipe (Qwen2.5-7B FR3E) in one process on the GPU in bf16 with the rehearsal's fixture model
   loaded by hub id (chat template, two EOS ids) and the HF engine: trains a few steps, checkpoints,
   evaluates the six benchmarks, writes DONE.
3. One FR3E trainer step at the 0.5B shape: the layout above (random weights, bf16) with the
   rehearsal's fixture tokenizer and chat template, the Table 1 FR3E recipe (K = 4 states, M = 16
   continuations) at `--prompts` prompts per step and `--response-tokens` response tokens (a random model
   practically never emits EOS, so every response has that length), a coin reward (random rewards, so every
   group trains), the HF engine: phase times of each step (generate, score, forward, backward) and peak memory.
4. The one-GPU profile's FR3E recipe (`reproduce/configs/1gpu/qwen2.5-math-1.5b-fr3e.yaml`: 16 prompts, K = 2,
   M = 8, 1,024 response tokens, bf16 over fp32 master weights, gradient checkpointing, 16k-token micro-batches,
   a 24 GB KV cache) on a random model in the Qwen2.5-Math-1.5B layout: peak GPU memory in each phase of a step
   (sampling, the no-grad forwards, the update, the engine's sleep and wake-up) beside `fr3e.study.plan`'s
   phase estimates, and the step's phase times (a random model never emits EOS: every response runs to the cap,
   the worst case for memory and time).
Writes DIR/gpu_paper_path.json. Needs a CUDA GPU; the CPU rehearsal (`make rehearse-table1`) covers the rest.

    python reproduce/gpu_paper_path.py --out DIR --parts step     # only part 3
    python reproduce/gpu_paper_path.py --out DIR --parts onegpu   # only part 4
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def qwen25_05b(device: str):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                         tie_word_embeddings=True)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    return model


def former_logprobs(model, ids, mask, want_entropy=True):
    """The computation before the fix: one fp32 copy of the whole logits, a full log_softmax, entropy."""
    from fr3e.method import entropy as entropy_mod

    logits = model(input_ids=ids, attention_mask=mask.long()).logits[:, :-1].float()  # (B, L-1, V) fp32
    logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    ent = entropy_mod.token_entropy(logits.detach(), mask[:, 1:]) if want_entropy else None
    return logp, ent


def peak_gb(fn) -> float:
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 1e9


def memory_check(rows: int, tokens: int) -> dict:
    from fr3e.training.policy import token_logprobs

    model = qwen25_05b("cuda")
    ids = torch.randint(0, 151936, (rows, tokens), device="cuda")
    mask = torch.ones_like(ids, dtype=torch.bool)
    out = {"shape": f"{rows} rows x {tokens} tokens x vocab 151936, bf16, Qwen2.5-0.5B layout",
           "weights_gb": sum(p.numel() * p.element_size() for p in model.parameters()) / 1e9}
    def nograd(fn):
        with torch.no_grad():
            fn(model, ids, mask, want_entropy=True)

    def with_grad(fn):
        logp, _ = fn(model, ids, mask, want_entropy=False)
        logp.sum().backward()

    for name, fn in (("former", former_logprobs), ("chunked", token_logprobs)):
        for mode, run in (("nograd", nograd), ("grad", with_grad)):
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            try:
                out[f"{name}_{mode}_gb"] = round(peak_gb(lambda run=run, fn=fn: run(fn)), 2)
            except torch.OutOfMemoryError as exc:
                out[f"{name}_{mode}_gb"] = f"OOM: {str(exc)[:120]}"
            out[f"{name}_{mode}_s"] = round(time.perf_counter() - t0, 3)
        model.zero_grad(set_to_none=True)
    # agreement of the two on one row
    with torch.no_grad():
        a, ea = former_logprobs(model, ids[:1, :512], mask[:1, :512])
        b, eb = token_logprobs(model, ids[:1, :512], mask[:1, :512], want_entropy=True)
    out["max_abs_diff_logp"] = float((a - b).abs().max())
    out["max_abs_diff_entropy"] = float((ea - eb).abs().max())
    return out


def paper_run(out_dir: Path) -> dict:
    from fr3e.rehearsal import fixtures, launch

    cache = out_dir / "cache"
    t0 = time.perf_counter()
    model_dir = fixtures.build_fixture_model(cache_dir=cache)
    hf_home = out_dir / "hf"
    fixtures.install_hub_cache(model_dir, hf_home)
    sizes = launch.Sizes(steps=4, eval_every=2, checkpoint_every=2, eval_n=4)
    overrides = [o.replace("model.dtype=float32", "model.dtype=bfloat16") for o in launch.size_overrides(sizes)]
    run_dir, ov = launch.table1_run("fr3e", sizes, out_dir / "runs", overrides)
    cmd = [sys.executable, "-m", "fr3e.cli.train", "--config", str(launch.recipe("fr3e")), "--run-dir", str(run_dir),
           "--no-progress"] + [a for o in ov for a in ("--set", o)]
    env = fixtures.hub_env(hf_home)
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()] \
        if (run_dir / "metrics.jsonl").exists() else []
    evals = [json.loads(x) for x in (run_dir / "eval.jsonl").read_text().splitlines()] \
        if (run_dir / "eval.jsonl").exists() else []
    env_json = json.loads((run_dir / "env.json").read_text()) if (run_dir / "env.json").exists() else {}
    return {"returncode": res.returncode, "seconds": time.perf_counter() - t0, "done": (run_dir / "DONE").exists(),
            "steps": [m["step"] for m in metrics], "eval_rows": len(evals),
            "benchmarks": sorted({e["benchmark"] for e in evals}),
            "devices": env_json.get("devices"), "dtype": "bfloat16",
            "time_step": [round(m.get("time_step", 0), 3) for m in metrics],
            "stderr_tail": res.stderr[-2500:] if res.returncode else ""}


def step_model(out_dir: Path, model_dir: Path | None = None, tokenizer=None, build=None) -> Path:
    """A model directory: the 0.5B layout (or `build`'s; random weights, bf16, vocab 151,936) with the fixture
    tokenizer."""
    from transformers import GenerationConfig

    from fr3e.rehearsal import fixtures
    from fr3e.utils.io import atomic_write_json

    model_dir = model_dir or out_dir / "step_model"
    tokenizer = tokenizer or fixtures.train_tokenizer(fixtures.fixture_texts(), fixtures.FixtureModelConfig().vocab_size)
    eot = tokenizer.convert_tokens_to_ids(fixtures.ENDOFTEXT)
    model = (build or qwen25_05b)("cuda")
    model.config.eos_token_id = model.config.bos_token_id = eot
    model.generation_config = GenerationConfig(bos_token_id=eot, eos_token_id=eot)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    tok_cfg.update({"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "add_bos_token": False,
                    "chat_template": fixtures.CHAT_TEMPLATE})
    atomic_write_json(model_dir / "tokenizer_config.json", tok_cfg)
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return model_dir


def trainer_step(out_dir: Path, prompts: int, response_tokens: int, steps: int = 2) -> dict:
    """`steps` FR3E steps of the 0.5B-shaped model in this process: phase times per step, peak GPU memory."""
    from fr3e.rehearsal import launch
    from fr3e.training.config import load_config
    from fr3e.training.trainer import train
    from fr3e.utils.io import read_jsonl

    t0 = time.perf_counter()
    model_dir = step_model(out_dir)
    sizes = launch.Sizes(steps=steps, prompts_per_step=prompts, max_response_tokens=response_tokens, eval_every=0,
                            checkpoint_every=steps, eval_n=1, eval_problems=1, eval_benchmarks=("gsm8k",))
    overrides = [o.replace("model.dtype=float32", "model.dtype=bfloat16")
                 for o in launch.size_overrides(sizes, hub_id=str(model_dir))]
    overrides += ["reward=coin", "sample_every=0", "data.eval_n=1", "data.eval_problems=1", "name=gpu-step-0.5b", f"steps={steps}"]
    config = load_config(launch.recipe("fr3e"), overrides)
    torch.cuda.reset_peak_memory_stats()
    t1 = time.perf_counter()
    run_dir = train(config, run_dir=out_dir / "step_run", progress=False, cache_dir=out_dir / "cache")
    rows = read_jsonl(run_dir / "metrics.jsonl")
    keys = ("time_step", "time_generate", "time_score", "time_forward", "time_backward", "gen_tokens",
            "prefill_tokens", "prefill_computed_tokens", "trained_tokens", "rollouts_trained", "continuation_length",
            "response_length", "base_length")
    return {"model": "Qwen2.5-0.5B layout, random weights, bf16, fixture tokenizer", "prompts_per_step": prompts,
            "max_response_tokens": response_tokens, "K": config.fr3e.num_anchors,
            "M": config.fr3e.continuations_per_state, "micro_batch_size": config.optim.micro_batch_size,
            "gradient_checkpointing": config.model.gradient_checkpointing,
            "steps": [{k: (round(r[k], 3) if isinstance(r.get(k), float) else r.get(k)) for k in keys} for r in rows],
            "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2),
            "setup_s": round(t1 - t0, 1), "train_call_s": round(time.perf_counter() - t1, 1)}


ONE_GPU_RECIPE = ROOT / "reproduce" / "configs" / "1gpu" / "qwen2.5-math-1.5b-fr3e.yaml"


def qwen25_math_15b(device: str):
    """A random model in the Qwen2.5-Math-1.5B layout (its config.json: 28 layers, hidden 1,536, MLP 8,960, 12
    heads, 2 key/value heads, vocabulary 151,936, tied embeddings, 4k positions, rope theta 10,000), bf16."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=4096,
                         rope_theta=10000.0, tie_word_embeddings=True)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    return model


class PhasePeaks:
    """Peak allocated and reserved GPU memory inside each wrapped Trainer method, nested calls included in their
    callers' peaks (the peak counter is reset on entry and folded into every open caller)."""

    def __init__(self, live: Path | None = None):
        self.stack: list[list] = []  # [label, peak allocated, peak reserved]
        self.peaks: dict[str, dict] = {}
        self.live = live  # rewritten after every wrapped call (a run cut short still reports its phases)
        self.process_peak = 0  # allocated bytes, the maximum over every fold (the counter itself is reset per call)

    def _fold(self):
        a, r = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
        self.process_peak = max(self.process_peak, a)
        for frame in self.stack:
            frame[1], frame[2] = max(frame[1], a), max(frame[2], r)

    def wrap(self, cls, method: str, label=None):
        original = getattr(cls, method)
        peaks = self

        def wrapped(obj, *args, **kwargs):
            name = label(args) if callable(label) else (label or method)
            peaks._fold()
            torch.cuda.reset_peak_memory_stats()
            peaks.stack.append([name, torch.cuda.memory_allocated(), torch.cuda.memory_reserved()])
            try:
                return original(obj, *args, **kwargs)
            finally:
                peaks._fold()
                frame = peaks.stack.pop()
                seen = peaks.peaks.setdefault(frame[0], {"calls": 0, "allocated_gb": 0.0, "reserved_gb": 0.0})
                seen["calls"] += 1
                seen["allocated_gb"] = round(max(seen["allocated_gb"], frame[1] / 1e9), 2)
                seen["reserved_gb"] = round(max(seen["reserved_gb"], frame[2] / 1e9), 2)
                if peaks.live is not None:
                    peaks.live.write_text(json.dumps(peaks.peaks, indent=1))

        setattr(cls, method, wrapped)


def one_gpu_step(out_dir: Path, steps: int = 2, prompts: int = 0, live: Path | None = None) -> dict:
    """`steps` steps of the one-GPU FR3E recipe on the 1.5B layout: peak memory by phase against the plan."""
    from fr3e.rehearsal import fixtures, launch
    from fr3e.study.plan import phase_memory
    from fr3e.training.config import load_config
    from fr3e.training.trainer import Trainer, train
    from fr3e.utils.io import read_jsonl

    t0 = time.perf_counter()
    planned = phase_memory(load_config(ONE_GPU_RECIPE), "hf", 1)
    model_dir = out_dir / "one_gpu_model"
    tokenizer = fixtures.train_tokenizer(fixtures.fixture_texts(), fixtures.FixtureModelConfig().vocab_size)
    step_model(out_dir, model_dir=model_dir, tokenizer=tokenizer, build=qwen25_math_15b)
    data = [o for o in launch.size_overrides(launch.Sizes(), hub_id=str(model_dir)) if o.startswith("data.local_files")]
    overrides = [f"model.base={model_dir}", *data, "reward=coin", "sample_every=0", "eval_every=0",
                 f"checkpoint_every={steps}", "data.eval_n=1", "data.eval_problems=1", "data.eval_benchmarks=[gsm8k]",
                 "name=gpu-step-1gpu", f"steps={steps}", *([f"data.prompts_per_step={prompts}"] if prompts else [])]
    config = load_config(ONE_GPU_RECIPE, overrides)
    peaks = PhasePeaks(live)
    peaks.wrap(Trainer, "_sample", label="sample (engine awake)")
    peaks.wrap(Trainer, "_forward_rows", label="no-grad forward (entropy, old log-probs)")
    peaks.wrap(Trainer, "_update", label="update (old log-probs + optimizer steps)")
    peaks.wrap(Trainer, "_engine_call", label=lambda args: f"engine {args[0]}")
    torch.cuda.reset_peak_memory_stats()
    t1 = time.perf_counter()
    report = {"model": "Qwen2.5-Math-1.5B layout, random weights, fixture tokenizer", "recipe": str(ONE_GPU_RECIPE.name),
              "prompts_per_step": config.data.prompts_per_step,
              "planned_gb": {k: round(v, 2) for k, v in planned["totals"].items()},
              "planned_terms_gb": {ph: {k: round(v, 2) for k, v in terms.items()}
                                   for ph, terms in planned["phases"].items()},
              "planned_binding": planned["binding"], "usable_gb": planned["usable_gb"]}
    try:
        run_dir = train(config, run_dir=out_dir / "one_gpu_run", progress=False, cache_dir=out_dir / "cache")
    finally:
        report["measured_peaks"] = peaks.peaks
        peaks._fold()  # what ran after the last wrapped call (the final checkpoint, the evaluation) counts too
        report["process_peak_allocated_gb"] = round(peaks.process_peak / 1e9, 2)
        report["train_call_s"] = round(time.perf_counter() - t1, 1)
        report["setup_s"] = round(t1 - t0, 1)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    keys = ("time_step", "time_generate", "time_score", "time_forward", "time_backward", "gen_tokens",
            "trained_tokens", "rollouts_trained", "continuation_length", "response_length", "base_length")
    report["steps"] = [{k: (round(r[k], 3) if isinstance(r.get(k), float) else r.get(k)) for k in keys} for r in rows]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--parts", default="memory,paper_run,step",
                        help="which of memory, paper_run, step, onegpu to run (comma-separated)")
    parser.add_argument("--onegpu-steps", type=int, default=2, help="part 4: steps of the one-GPU recipe")
    parser.add_argument("--onegpu-prompts", type=int, default=0,
                        help="part 4: prompts per step (0: the recipe's 16; fewer keep every micro-batch's shape)")
    parser.add_argument("--live", default=None, help="part 4: a JSON file rewritten with the peaks after every phase")
    parser.add_argument("--prompts", type=int, default=2, help="part 3: prompts per FR3E step")
    parser.add_argument("--response-tokens", type=int, default=1024, help="part 3: max response tokens")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.stderr.write("error: no CUDA GPU visible; this check measures GPU memory. Run make rehearse-table1 on CPU.\n")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    parts = {"memory": lambda: memory_check(args.rows, args.tokens), "paper_run": lambda: paper_run(out),
             "step": lambda: trainer_step(out, args.prompts, args.response_tokens),
             "onegpu": lambda: one_gpu_step(out, args.onegpu_steps, args.onegpu_prompts,
                                            Path(args.live) if args.live else None)}
    for name, fn in ((k, v) for k, v in parts.items() if k in args.parts.split(",")):
        try:
            report[name] = fn()
        except Exception as exc:  # reported, not hidden
            import traceback

            report[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2500:]}
        (out / "gpu_paper_path.json").write_text(json.dumps(report, indent=1, default=str))
        sys.stdout.write(json.dumps({name: report[name]}, indent=1, default=str)[:3000] + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
