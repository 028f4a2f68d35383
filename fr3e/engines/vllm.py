"""The GPU rollout engine of the `paper` profile: vLLM with prefix caching, fed token ids.

Implements `fr3e.engines.base.Engine` like `HFEngine` (same inputs, same outputs) for the authors' setup
(PAPER.md: verl + FSDP + vLLM with prefix caching): the M continuations of a state S_j share one prefill
of prompt ⊕ prefix, and the states of one trajectory share the prefill of their common prefix.

The version we implement:
- `vllm.LLM(model=path, enable_prefix_caching=True, enable_sleep_mode=<when the platform has it>, ...)`,
  colocated with training in each process. `VLLM_ENABLE_V1_MULTIPROCESSING=0` is set (unless already set)
  before vLLM is imported, so the engine core runs in this process and `sync_weights` can write into the
  model directly (as TRL's colocate mode does); otherwise weights go through `LLM.apply_model`.
- Prompts are `TokensPrompt(prompt_token_ids=...)`, never text (states are token-exact, PAPER.md defect 4).
- Sampling: `SamplingParams(n, temperature, top_p, max_tokens, seed, logprobs=0, detokenize=False)` with
  the EOS id(s) as `stop_token_ids`; prompt i gets seed `seed + i`, so the same seed gives the same samples
  and different prompts get different streams. `temperature == 0` is greedy: one sample copied n times.
- Log-probs are vLLM's default `raw_logprobs` (before temperature / top-p) of the sampled token: the
  policy's own log π, what `HFEngine` returns and the trainer recomputes.
- `max_tokens` is clipped to the model's context (max_model_len − prompt length) so a long state never
  errors; the clipped sample ends with finish reason "length". (Qwen2.5-Math-7B has a 4096-token context:
  late FR3E states get a shorter budget there.)
- `sync_weights(model)` streams the trainer's parameters one tensor at a time into vLLM's `load_weights`
  (FSDP2 DTensors are gathered with `full_tensor()`, on every rank in the same order), then
  `reset_prefix_cache()`: cached prefixes were computed with the old weights.
- Sleep mode (when enabled): `sleep()` frees the engine's GPU memory for the training phase (level 1:
  weights to CPU, KV cache dropped); `sync_weights` wakes the weights up first and `generate` wakes the
  KV cache; the trainer calls `sleep()` before its backward passes.
- Counters: prompt tokens (prompt length × n, as `HFEngine`), generated tokens, prefix-cache hits as
  reported by vLLM (`RequestOutput.num_cached_tokens`), seconds, calls.
vLLM is optional (`pip install -e '.[gpu]'`) and GPU-only; it is imported when an engine is built.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from fr3e.engines.base import Completion, EngineCounters

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
    """Runs inside a vLLM worker (`LLM.apply_model`): load a chunk of weights into its model."""
    model.load_weights(weights)
    return len(weights)


def eos_ids(tokenizer=None, eos_token_id: int | list[int] | None = None) -> list[int]:
    """The stop token ids: the explicit ones, else the tokenizer's EOS."""
    if eos_token_id is None and tokenizer is not None:
        eos_token_id = getattr(tokenizer, "eos_token_id", None)
    if eos_token_id is None:
        return []
    return [int(x) for x in (eos_token_id if isinstance(eos_token_id, list | tuple) else [eos_token_id])]


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
    """Rollouts from vLLM (GPU), colocated with training (see module docstring)."""

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
        """model_path: hub id or local directory of the policy's initial weights. tokenizer: read for EOS only.
        enable_sleep_mode: None = when the platform supports it. sleep_level: 1 keeps weights in CPU memory
        while asleep, 2 discards them (then `sync_weights` must run before the next `generate`).
        external_launcher: one engine per torchrun/accelerate rank, tensor-parallel groups over ranks
        (TRL's colocate mode); needed for tensor_parallel_size > 1 under `accelerate launch`.
        llm_kwargs: passed to `vllm.LLM` (e.g. skip_tokenizer_init=True, enforce_eager=True)."""
        vllm = import_vllm()
        from vllm.inputs import TokensPrompt

        self._vllm = vllm
        self._tokens_prompt = TokensPrompt
        if enable_sleep_mode is None:
            enable_sleep_mode = _sleep_mode_available()
        if sleep_level not in (1, 2):
            raise ValueError(f"sleep_level must be 1 or 2, got {sleep_level}")
        kwargs: dict[str, Any] = dict(
            model=str(model_path), dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size, seed=seed, enable_prefix_caching=True,
            enable_sleep_mode=enable_sleep_mode)
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if external_launcher:
            kwargs["distributed_executor_backend"] = "external_launcher"
        kwargs.update(llm_kwargs)
        logger.info("starting vLLM: %s", kwargs)
        self.llm = vllm.LLM(**kwargs)
        self.stop_token_ids = eos_ids(tokenizer, eos_token_id) or eos_ids(eos_token_id=_config_eos(model_path))
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
        """Sample `n` completions per prompt; result[i][k] is sample k of prompt i (see module docstring)."""
        if n < 1 or max_new_tokens < 1:
            raise ValueError(f"n and max_new_tokens must be >= 1, got n={n}, max_new_tokens={max_new_tokens}")
        if temperature < 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
        if any(len(p) == 0 for p in prompt_ids):
            raise ValueError("every prompt needs at least one token (e.g. BOS)")
        if not prompt_ids:
            return []
        start = time.perf_counter()
        self.wake_up()
        n_draw = 1 if temperature == 0 else n
        params = [self._sampling_params(len(p), n_draw, max_new_tokens, temperature, top_p,
                                        None if seed is None else seed + i) for i, p in enumerate(prompt_ids)]
        prompts = [self._tokens_prompt(prompt_token_ids=[int(t) for t in p]) for p in prompt_ids]
        outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        results = []
        cached = 0
        for out in outputs:
            completions = [to_completion(o) for o in out.outputs]
            if len(completions) != n_draw:
                raise RuntimeError(f"vLLM returned {len(completions)} samples, expected {n_draw}")
            if n_draw < n:
                c0 = completions[0]
                completions += [Completion(list(c0.token_ids), list(c0.logprobs), c0.finish_reason)
                                for _ in range(n - 1)]
            results.append(completions)
            cached += int(getattr(out, "num_cached_tokens", 0) or 0)
        c = self.counters
        c.calls += 1
        c.prompt_tokens += n * sum(len(p) for p in prompt_ids)
        c.generated_tokens += sum(len(x.token_ids) for r in results for x in r)
        c.cached_prefix_tokens += cached
        c.seconds += time.perf_counter() - start
        return results

    def _sampling_params(self, prompt_len: int, n: int, max_new_tokens: int, temperature: float, top_p: float,
                         seed: int | None):
        max_tokens = max_new_tokens
        if self.max_model_len is not None:
            room = self.max_model_len - prompt_len
            if room < 1:
                raise ValueError(f"a prompt of {prompt_len} tokens leaves no room in the model's "
                                 f"{self.max_model_len}-token context; lower data.max_prompt_tokens.")
            if room < max_tokens:
                self.counters.extra["clipped_to_context"] = self.counters.extra.get("clipped_to_context", 0) + 1
                max_tokens = room
        kwargs = dict(n=n, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                      max_tokens=max_tokens, seed=seed, logprobs=0, detokenize=False,
                      stop_token_ids=list(self.stop_token_ids))
        return self._vllm.SamplingParams(**kwargs)

    # ------------------------------------------------------------------------------ weights
    def sync_weights(self, model) -> None:
        """Copy `model`'s current weights into vLLM in place, then drop the prefix cache.

        `model`: the trainer's (unwrapped) module, a state dict, or an iterable of (name, tensor)."""
        start = time.perf_counter()
        if self.enable_sleep_mode and self._weights_asleep:
            self._wake(["weights"])
            self._weights_asleep = False
        local = self._local_model()
        count = 0
        if local is not None:
            for name, tensor in iter_weights(model):
                local.load_weights([(name, tensor)])
                count += 1
        else:
            count = self._load_remote(iter_weights(model))
        self.llm.reset_prefix_cache()
        self.counters.extra["weight_syncs"] = self.counters.extra.get("weight_syncs", 0) + 1
        self.counters.extra["sync_seconds"] = self.counters.extra.get("sync_seconds", 0.0) + (
            time.perf_counter() - start)
        logger.debug("synced %d tensors into vLLM", count)

    def _local_model(self):
        """vLLM's model when its engine core runs in this process (TRL's colocate path), else None."""
        try:
            return self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        except AttributeError:
            return None

    def _load_remote(self, weights: Iterator[tuple[str, Any]], chunk_bytes: int = 1 << 30) -> int:
        """Ship weights to out-of-process workers in ~1 GB CPU chunks through `LLM.apply_model`."""
        if not hasattr(self.llm, "apply_model"):
            raise RuntimeError("this vLLM runs its engine in other processes and has no LLM.apply_model; set "
                               "VLLM_ENABLE_V1_MULTIPROCESSING=0 before building the engine.")
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


def _config_eos(model_path: str) -> int | list[int] | None:
    """EOS id(s) from a local model directory's generation_config.json / config.json (no hub access)."""
    import json
    from pathlib import Path

    for name in ("generation_config.json", "config.json"):
        path = Path(model_path) / name
        if path.is_file():
            value = json.loads(path.read_text()).get("eos_token_id")
            if value is not None:
                return value
    return None


__all__ = ["VLLMEngine", "import_vllm", "iter_weights", "to_completion", "vllm_param_name", "eos_ids",
           "INSTALL_HINT"]
