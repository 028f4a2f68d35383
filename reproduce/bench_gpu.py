"""Rollout throughput on a GPU: our HF engine vs `model.generate` vs vLLM (`make bench-gpu`).

    python reproduce/bench_gpu.py [--shapes 0.5b,7b] [--out runs/bench_gpu.json] [--profile FILE]
    python reproduce/bench_gpu.py --tiny          # a tiny random model on the CPU, in seconds (CI)

Models: random-initialised Qwen2 decoders in the Qwen2.5-0.5B and Qwen2.5-7B layouts (152k vocabulary), built
directly on the GPU in bf16 (no hub, no download). Two workloads, sampled at T = 1:

- fixed: P prompts of random tokens × n samples, a fixed number of new tokens (a random model practically
  never emits EOS: every row runs to the end);
- fr3e: FR3E-shaped rollouts: nested states S_j = prompt ⊕ response[:a_j] of one base trajectory per prompt
  (K states at evenly spaced cut points), M = 16 continuations each, and EOS at realistic lengths: a constant
  bias on the EOS logit (a forward hook on the LM head, the same for every engine) makes EOS arrive at each
  step with probability 1/mean_length, so lengths are geometric, capped at max_new_tokens.

Each engine's first call at a workload's lengths is reported as "cold" (it pays per-shape kernel planning,
graph capture, allocator growth); a second call on the same lengths (other seed) as "warm". One short call of
every engine on other lengths runs first, so library start-up is in neither. Reported per run: generated
tokens/s (EOS included, padding after it excluded), its ratio to `model.generate`, peak GPU memory above the
weights, and the fraction of the bf16 peak (matrix FLOPs of the generated tokens over the dense bf16 peak of
the card: 989 TFLOP/s for an H100/H200 SXM). The eager step is one bare decode forward at the workload's batch
with a `DynamicCache` at its mean context: a reference step time, not a floor (`generate` with its own cache
handling can beat it).

Every engine is warmed on the same shapes (its first call, reported as "cold"), then timed `--repeats` times
(median, with the range); a call that samples one token times the prefill, so decode tokens/s = (tokens - rows) /
(seconds - prefill). The baselines are the strongest a user has: `model.generate` with its default cache and
with `cache_implementation="static"` (which transformers compiles on a GPU), and vLLM with prefix caching when
it is installed.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAYOUTS = {  # Qwen2.5 config.json values (hidden, intermediate, layers, heads, kv heads, vocab, tied)
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512, tie_word_embeddings=True),
}
BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 FLOP/s by datasheet
# Workload sizes: (fixed: prompts, prompt tokens, n, new tokens), (fr3e: trajectories, prompt tokens, base
# response tokens, states per trajectory, M, max new tokens, mean length).
GPU_SIZES = {"fixed": dict(prompts=64, prompt_tokens=128, n=8, new_tokens=256),
             "fr3e": dict(trajectories=2, prompt_tokens=128, response_tokens=768, states=8, m=16, new_tokens=512,
                          mean_length=160)}
TINY_SIZES = {"fixed": dict(prompts=4, prompt_tokens=12, n=4, new_tokens=12),
              "fr3e": dict(trajectories=2, prompt_tokens=8, response_tokens=24, states=3, m=4, new_tokens=16,
                           mean_length=6)}
EOS = 0  # token id that stops a row (random models: any id will do)


def build_model(layout: str, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """A random-initialised Qwen2ForCausalLM of `layout`, created on `device` in `dtype`."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**LAYOUTS[layout], max_position_embeddings=32768, rope_theta=1e6, eos_token_id=EOS,
                         bos_token_id=EOS, pad_token_id=EOS)
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    model.generation_config = GenerationConfig(eos_token_id=EOS, pad_token_id=EOS, bos_token_id=EOS)
    return model.eval()


class EosBias:
    """A forward hook on the LM head adding `bias` to the EOS logit (geometric response lengths)."""

    def __init__(self, model, mean_length: float, probe_ids: torch.Tensor):
        with torch.inference_mode():
            logits = model(input_ids=probe_ids).logits.float()  # (B, L, V)
        lse = torch.logsumexp(logits, -1).mean()
        p = 1.0 / mean_length
        self.bias = float(lse + torch.log(torch.tensor(p / (1 - p))) - logits[..., EOS].mean())
        # Built once on the device: the hook runs inside captured CUDA graphs, where no host copy may happen.
        self.vector = torch.zeros(logits.shape[-1], dtype=next(model.parameters()).dtype, device=logits.device)
        self.vector[EOS] = self.bias
        self.handle = model.get_output_embeddings().register_forward_hook(self)

    def __call__(self, module, inputs, output):
        return output + self.vector

    def remove(self):
        self.handle.remove()


def workload(kind: str, sizes: dict, vocab: int, seed: int) -> dict:
    """Prompts (token-id lists, no EOS in them), samples per prompt, new tokens."""
    g = torch.Generator().manual_seed(seed)
    if kind == "fixed":
        s = sizes["fixed"]
        prompts = torch.randint(1, vocab, (s["prompts"], s["prompt_tokens"]), generator=g).tolist()
        return {"prompts": prompts, "n": s["n"], "new_tokens": s["new_tokens"]}
    s = sizes["fr3e"]
    prompts = []
    for _ in range(s["trajectories"]):
        base = torch.randint(1, vocab, (s["prompt_tokens"] + s["response_tokens"],), generator=g).tolist()
        cuts = [s["response_tokens"] * j // s["states"] for j in range(s["states"])]  # a_0 = 0: the prompt itself
        prompts += [base[: s["prompt_tokens"] + a] for a in cuts]
    return {"prompts": prompts, "n": s["m"], "new_tokens": s["new_tokens"], "mean_length": s["mean_length"]}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_ours(model, w: dict, seed: int, device, decode: str = "auto") -> tuple[list[int], dict]:
    """`HFEngine` with every row in one chunk; decode 'auto' = CUDA graphs on a GPU, the eager loop on a CPU."""
    from fr3e.engines.hf import HFEngine

    engine = HFEngine(model, eos_token_id=EOS, pad_token_id=EOS, batch_size=len(w["prompts"]) * w["n"], decode=decode)
    out = engine.generate(w["prompts"], n=w["n"], max_new_tokens=w["new_tokens"], temperature=1.0, seed=seed)
    return [len(c.token_ids) for row in out for c in row], dict(engine.counters.extra)


def run_generate(model, w: dict, seed: int, device, cache: str | None = None) -> tuple[list[int], dict]:
    """`model.generate` on the same rows: left-padded prompts, num_return_sequences = n, sampling at T = 1.
    cache: None (the default growing DynamicCache) or "static" (`cache_implementation="static"`: a preallocated
    cache whose forward transformers compiles by itself on a GPU, the documented fast setting)."""
    prompts = w["prompts"]
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), EOS, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True,
                             temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=w["new_tokens"],
                             num_return_sequences=w["n"], eos_token_id=EOS, pad_token_id=EOS,
                             **({"cache_implementation": cache} if cache else {}))
    new = out[:, width:].cpu()
    is_eos = new == EOS
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, torch.full((new.shape[0],), new.shape[1]))
    return first.tolist(), {}


def run_vllm(llm, w: dict, seed: int, device) -> tuple[list[int], dict]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(n=w["n"], temperature=1.0, top_p=1.0, max_tokens=w["new_tokens"], seed=seed,
                            stop_token_ids=[EOS], logit_bias={EOS: w.get("eos_bias", 0.0)} if w.get("eos_bias") else None)
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in w["prompts"]], params, use_tqdm=False)
    return [len(c.token_ids) for o in outs for c in o.outputs], {}


def timed(fn, model, w, seed, device) -> dict:
    """One timed call. The allocator's cache is left as the previous call left it (emptying it before each call
    would charge a growing cache for allocations a warm process does not make)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    sync(device)
    t0 = time.perf_counter()
    lengths, extra = fn(model, w, seed, device)
    sync(device)
    seconds = time.perf_counter() - t0
    tokens = sum(lengths)
    out = {"seconds": round(seconds, 4), "tokens": tokens, "tokens_per_s": tokens / seconds,
           "mean_length": statistics.fmean(lengths), "max_length": max(lengths)}
    if device.type == "cuda":
        out["peak_gb_above_weights"] = round((torch.cuda.max_memory_allocated(device) - base) / 1e9, 3)
    for key in ("graph_captures", "graph_capture_s", "prefix_shared_tokens", "prefill_computed_tokens"):
        if key in extra:
            out[key] = round(extra[key], 4) if isinstance(extra[key], float) else extra[key]
    return out


def summarise(runs: list[dict], prefill_s: float, rows: int) -> dict:
    """The median run of `runs` (by tokens/s) with the spread over them, and the decode rate once the prefill's
    time (a call that samples one token) is taken out: (tokens - rows) / (seconds - prefill_s)."""
    rates = sorted(r["tokens_per_s"] for r in runs)
    mid = sorted(runs, key=lambda r: r["tokens_per_s"])[len(runs) // 2]
    out = dict(mid, tokens_per_s=statistics.median(rates), tokens_per_s_min=rates[0], tokens_per_s_max=rates[-1],
               repeats=len(runs), seconds_all=[r["seconds"] for r in runs], prefill_s=round(prefill_s, 5))
    decode_s = mid["seconds"] - prefill_s
    out["decode_tokens_per_s"] = (mid["tokens"] - rows) / decode_s if decode_s > 0 else float("nan")
    return out


def matmul_flops_per_token(config, context: float) -> float:
    """2 × (non-embedding weights + LM head) + attention (QK and AV) at `context` positions."""
    h, layers, heads = config.hidden_size, config.num_hidden_layers, config.num_attention_heads
    kv, inter, vocab = config.num_key_value_heads, config.intermediate_size, config.vocab_size
    head_dim = h // heads
    per_layer = h * heads * head_dim + 2 * h * kv * head_dim + heads * head_dim * h + 3 * h * inter
    return 2 * (layers * per_layer + h * vocab) + 4 * layers * heads * head_dim * context


def eager_step(model, rows: int, context: int, device, repeats: int = 5) -> dict:
    """Seconds of one bare decode forward at `rows` rows on a `DynamicCache` of `context` positions."""
    from transformers import DynamicCache

    from fr3e.engines.hf import cache_kwarg

    config = model.config
    head_dim = config.hidden_size // config.num_attention_heads
    dtype = next(model.parameters()).dtype
    cache = DynamicCache(config=config)
    for layer in range(config.num_hidden_layers):
        shape = (rows, config.num_key_value_heads, context, head_dim)
        cache.update(torch.randn(shape, dtype=dtype, device=device), torch.randn(shape, dtype=dtype, device=device),
                     layer)
    ids = torch.randint(1, config.vocab_size, (rows, 1), device=device)
    mask = torch.ones((rows, context + 1), dtype=torch.long, device=device)
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            sync(device)
            t0 = time.perf_counter()
            model(input_ids=ids, attention_mask=mask, **{cache_kwarg(model): cache}, use_cache=True)
            sync(device)
            times.append(time.perf_counter() - t0)
            cache.crop(-1)  # back to `context` positions
    step = statistics.median(times[1:])
    del cache
    return {"rows": rows, "context": context, "step_s": round(step, 5), "tokens_per_s": rows / step}


def make_vllm(model, tmp: Path):
    """A vLLM engine over `model`'s weights (saved to `tmp`), or None with the reason when vLLM is missing."""
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # not installed, or broken against this torch
        return None, f"vLLM not importable: {type(exc).__name__}: {str(exc)[:160]}"
    from vllm import LLM

    model.save_pretrained(tmp)
    llm = LLM(model=str(tmp), skip_tokenizer_init=True, dtype="bfloat16", gpu_memory_utilization=0.35, seed=0,
              enable_prefix_caching=True)
    return llm, None


def bench_shape(layout: str, device, dtype, sizes: dict, engines: list[str], deadline: float, log,
                repeats: int = 3) -> dict:
    t0 = time.perf_counter()
    model = build_model(layout, device, dtype)
    config = model.config
    params = sum(p.numel() for p in model.parameters())
    res = {"layout": layout, "params": params, "build_s": round(time.perf_counter() - t0, 2), "workloads": {}}
    log(f"[{layout}] built {params / 1e9:.2f}B parameters in {res['build_s']} s")
    llm, why = (None, "not asked") if "vllm" not in engines else make_vllm(model, Path(f"/tmp/bench_gpu_{layout}"))
    if why:
        res["vllm"] = why
    runners = {"ours": run_ours, "generate": run_generate}
    if "generate_static" in engines:  # the strongest `generate` a transformers user has: static cache (compiled)
        runners["generate_static"] = lambda m, w, s, d: run_generate(m, w, s, d, cache="static")
    if "eager" in engines:  # our engine's eager loop (the engine before CUDA graphs), for comparison
        runners["eager"] = lambda m, w, s, d: run_ours(m, w, s, d, decode="eager")
    if llm is not None:
        runners["vllm"] = lambda _m, w, s, d, llm=llm: run_vllm(llm, w, s, d)
    # Library start-up (cuBLAS handles, first kernels) outside every timed call: one short call each.
    warm = {"prompts": [list(range(1, 6)), list(range(3, 12))], "n": 2, "new_tokens": 4}
    for fn in runners.values():
        fn(model, warm, 0, device)
    for kind in ("fixed", "fr3e"):
        if time.perf_counter() > deadline:
            res["workloads"][kind] = {"skipped": "time budget spent"}
            continue
        w = workload(kind, sizes, config.vocab_size, seed=1)
        hook = None
        if kind == "fr3e":
            hook = EosBias(model, w["mean_length"], torch.tensor([w["prompts"][0][:32]], device=device))
            w["eos_bias"] = hook.bias
        rows = len(w["prompts"]) * w["n"]
        lengths = [len(p) for p in w["prompts"]]
        context = int(statistics.fmean(lengths) + w["new_tokens"] / 2)
        entry = {"rows": rows, "prompt_tokens_mean": statistics.fmean(lengths), "max_new_tokens": w["new_tokens"],
                 "eos_bias": w.get("eos_bias"), "runs": {}}
        prefill_only = dict(w, new_tokens=1)  # prompts prefilled and one token sampled: the prefill's time
        for name, fn in runners.items():
            try:
                # cold: the first call on these shapes (it also warms them); warm: the median of `repeats` more
                cold = timed(fn, model, w, 11, device)
                runs = [timed(fn, model, w, 12 + k, device) for k in range(repeats)
                        if time.perf_counter() < deadline or k == 0]
                timed(fn, model, prefill_only, 10, device)
                prefill = [timed(fn, model, prefill_only, 20 + k, device)["seconds"] for k in range(repeats)]
            except Exception as exc:  # reported, not hidden; the other engines still run
                entry["runs"][f"{name}_warm"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                log(f"[{layout} {kind}] {name}: FAILED {type(exc).__name__}: {str(exc)[:300]}")
                continue
            entry["runs"][f"{name}_cold"] = cold
            entry["runs"][f"{name}_warm"] = r = summarise(runs, statistics.median(prefill), rows)
            log(f"[{layout} {kind}] {name:15} warm: {r['tokens_per_s']:>10,.0f} tok/s [{r['tokens_per_s_min']:,.0f}, "
                f"{r['tokens_per_s_max']:,.0f}] over {r['repeats']} runs; prefill {r['prefill_s'] * 1e3:.1f} ms, decode "
                f"{r['decode_tokens_per_s']:,.0f} tok/s; cold {cold['tokens_per_s']:,.0f} tok/s"
                + (f"  peak +{r['peak_gb_above_weights']} GB" if "peak_gb_above_weights" in r else ""))
        entry["eager_step"] = eager_step(model, rows, context, device)
        log(f"[{layout} {kind}] eager step: {entry['eager_step']['tokens_per_s']:,.0f} tok/s "
            f"({entry['eager_step']['step_s'] * 1e3:.2f} ms per step at {rows} rows, context {context})")
        peak = next((v for k, v in BF16_PEAK.items() if device.type == "cuda" and k in torch.cuda.get_device_name(device)),
                    None)
        for key, r in entry["runs"].items():
            if "error" in r:
                continue
            phase = key.rsplit("_", 1)[1]
            for base in ("generate", "generate_static"):
                ref = entry["runs"].get(f"{base}_{phase}")
                if ref and "error" not in ref:
                    r[f"ratio_to_{base}"] = round(r["tokens_per_s"] / ref["tokens_per_s"], 3)
                    if phase == "warm" and math.isfinite(ref.get("decode_tokens_per_s", math.nan)):
                        r[f"decode_ratio_to_{base}"] = round(r["decode_tokens_per_s"] / ref["decode_tokens_per_s"], 3)
            flops = matmul_flops_per_token(config, statistics.fmean(lengths) + r["mean_length"] / 2)
            r["tflops"] = round(flops * r["tokens_per_s"] / 1e12, 2)
            if peak:
                r["fraction_of_bf16_peak"] = round(flops * r["tokens_per_s"] / peak, 4)
        if hook is not None:
            hook.remove()
        res["workloads"][kind] = entry
    del model, llm
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return res


def profile_engine(layout: str, device, dtype, sizes: dict, path: Path, new_tokens: int = 32) -> dict:
    """torch.profiler over one engine call (fixed workload, `new_tokens`): operator table written to `path`."""
    from torch.profiler import ProfilerActivity, profile

    model = build_model(layout, device, dtype)
    w = workload("fixed", sizes, model.config.vocab_size, seed=2)
    w["new_tokens"] = new_tokens
    run_ours(model, w, 0, device)  # same lengths once before
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        lengths, extra = run_ours(model, w, 1, device)
        sync(device)
    events = prof.key_averages()
    try:
        table = events.table(sort_by="device_time_total" if device.type == "cuda" else "cpu_time_total", row_limit=30)
    except Exception:  # older profilers name the column cuda_time_total
        table = events.table(sort_by="cuda_time_total", row_limit=30)
    counts = {e.key: e.count for e in events if e.key in ("cudaStreamSynchronize", "cudaGraphLaunch",
                                                           "cudaLaunchKernel", "cudaMemcpyAsync", "aten::item",
                                                           "aten::_local_scalar_dense")}
    total_cpu = sum(e.self_cpu_time_total for e in events) / 1e6
    total_dev = sum(getattr(e, "self_device_time_total", 0) for e in events) / 1e6
    path.write_text(f"one HFEngine call: {len(w['prompts'])} prompts x n={w['n']}, {new_tokens} new tokens, "
                    f"{layout} layout on {device}\ncounts: {counts}\nself CPU s {total_cpu:.3f}, self device s "
                    f"{total_dev:.3f}, extra {extra}\n\n{table}\n")
    del model
    gc.collect()
    return {"counts": counts, "self_cpu_s": round(total_cpu, 3), "self_device_s": round(total_dev, 3),
            "tokens": sum(lengths), "extra": extra}


def format_table(report: dict) -> str:
    lines = [f"bench-gpu on {report['device']} ({report['dtype']}), torch {report['torch']}, "
             f"transformers {report['transformers']}; warm = median of the timed runs [min, max]"]
    for shape in report["shapes"]:
        for kind, e in shape["workloads"].items():
            if "runs" not in e:
                lines.append(f"{shape['layout']} {kind}: {e}")
                continue
            lines.append(f"\n{shape['layout']} ({shape['params'] / 1e9:.2f}B) {kind}: {e['rows']} rows, prompts "
                         f"{e['prompt_tokens_mean']:.0f} tokens (mean), max_new_tokens {e['max_new_tokens']}; eager "
                         f"step {e['eager_step']['tokens_per_s']:,.0f} tok/s")
            lines.append(f"  {'engine':16}{'warm tok/s':>12}{'range':>20}{'prefill ms':>11}{'decode tok/s':>13}"
                         f"{'x gen':>7}{'x static':>9}{'cold tok/s':>12}{'peak GB':>9}")
            names = list(dict.fromkeys(k.rsplit("_", 1)[0] for k in e["runs"]))
            for name in names:
                r, cold = e["runs"].get(f"{name}_warm", {}), e["runs"].get(f"{name}_cold", {})
                if "error" in r:
                    lines.append(f"  {name:16}{r['error']}")
                    continue
                spread = f"[{r['tokens_per_s_min']:,.0f}, {r['tokens_per_s_max']:,.0f}]"
                lines.append(f"  {name:16}{r['tokens_per_s']:>12,.0f}{spread:>20}{r['prefill_s'] * 1e3:>11.1f}"
                             f"{r['decode_tokens_per_s']:>13,.0f}{r.get('ratio_to_generate', math.nan):>7.2f}"
                             f"{r.get('ratio_to_generate_static', math.nan):>9.2f}"
                             f"{cold.get('tokens_per_s', math.nan):>12,.0f}{r.get('peak_gb_above_weights', math.nan):>9.2f}")
        if "vllm" in shape:
            lines.append(f"  vLLM: {shape['vllm']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="0.5b,7b", help="comma-separated layouts: 0.5b, 7b (default: both)")
    parser.add_argument("--tiny", action="store_true", help="a tiny random model on the CPU, tiny workloads (CI)")
    parser.add_argument("--engines", default="ours,generate,generate_static,vllm",
                        help="ours, generate (dynamic cache), generate_static (static cache, compiled on a GPU), vllm "
                             "(when importable, prefix caching on), eager (our engine's eager loop)")
    parser.add_argument("--out", default="runs/bench_gpu.json", help="JSON results (default: %(default)s)")
    parser.add_argument("--profile", default=None, help="also profile one engine call; operator table to this file")
    parser.add_argument("--budget-s", type=float, default=270.0, help="skip what would start after this many seconds")
    parser.add_argument("--repeats", type=int, default=3, help="timed warm runs per engine and workload (median, spread)")
    args = parser.parse_args(argv)
    from fr3e.utils.io import atomic_write_text

    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    bad = [s for s in shapes if s not in ("0.5b", "7b")]
    if bad:
        sys.stderr.write(f"error: --shapes {','.join(bad)}: use 0.5b and/or 7b (or --tiny)\n")
        return 2
    engines = [e.strip() for e in args.engines.split(",")]
    if args.tiny or not torch.cuda.is_available():
        if not args.tiny:
            sys.stderr.write("no CUDA GPU visible: running the tiny shape on the CPU (--tiny)\n")
        device, dtype, shapes, sizes = torch.device("cpu"), torch.float32, ["tiny"], TINY_SIZES
    else:
        device, dtype, sizes = torch.device("cuda"), torch.bfloat16, GPU_SIZES
    import transformers

    start = time.perf_counter()
    deadline = start + args.budget_s
    log = lambda msg: (sys.stdout.write(f"{time.perf_counter() - start:7.1f}s {msg}\n"), sys.stdout.flush())  # noqa: E731
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "dtype": str(dtype).removeprefix("torch."), "torch": torch.__version__,
              "transformers": transformers.__version__, "sizes": sizes, "torch_threads": torch.get_num_threads(),
              "load_start": list(os.getloadavg()), "shapes": []}
    for layout in shapes:
        if time.perf_counter() > deadline:
            report["shapes"].append({"layout": layout, "params": 0, "workloads": {"all": {"skipped": "time budget"}}})
            continue
        report["shapes"].append(bench_shape(layout, device, dtype, sizes, engines, deadline, log, args.repeats))
        atomic_write_text(args.out, json.dumps(report, indent=1))
    if args.profile:
        report["profile"] = profile_engine(shapes[0], device, dtype, sizes, Path(args.profile))
    report["wall_s"] = round(time.perf_counter() - start, 1)
    report["load_end"] = list(os.getloadavg())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=1))
    print(format_table(report))
    print(f"wrote {args.out} in {report['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
