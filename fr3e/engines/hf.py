"""The default rollout engine: a KV-cached sampling loop over a Hugging Face causal LM (CPU or GPU).

Implements `fr3e.engines.base.Engine` for the trainer (base trajectories, continuations from every state
S_j, paper §3, first return and explore) and for `fr3e.evaluation.evaluate`. Prompts are token-id lists; a state S_j is
prompt ⊕ response[:a_j] handed over token-exactly.

The version we implement (and why it is not `model.generate`):
- Our own loops over `model(..., cache=...)`, not `model.generate`. On a CPU (the tiny model at batch 256 on
  2 idle cores): 47k vs 38k generated tok/s at a fixed length, and 38k vs 16k tok/s on real arithmetic
  rollouts that stop at EOS (n=16 per prompt). On one H200 in bf16 (reproduce/bench_gpu.md): 2.7x
  `model.generate` with its default dynamic cache at the Qwen2.5-0.5B layout and 1.35x at the 7B layout at a
  fixed length, single warm runs; against `generate` with a static (compiled) cache and against vLLM it is not
  measured yet (docs/paper-profile.md), so no speed-up over them is claimed.
- Prefill: each prompt's prefix (all tokens but the last) is computed once per chunk and its keys and values
  gathered to its n sample rows; a prompt that is a prefix of another prompt of the chunk (FR3E's nested states
  S_j of one trajectory) reads them from the longest one instead of being prefilled again
  (`share_prefixes`). The first decode step feeds every row's last prompt token.
- Two decode loops (`decode`): 'eager' (the CPU default) grows a `DynamicCache` by one position per step and
  drops rows that emitted EOS from the batch and the cache at once; 'static' preallocates a cache of
  W + max_new_tokens positions, so that every step has the same shapes, and 'graph' (the CUDA default) runs
  that step as the replay of a captured CUDA graph: no per-step kernel launches, no per-step read-backs
  (finished rows are counted every `check_every` steps and compacted into the next smaller batch size of
  8, 16, 32, ..., one graph each). A model whose step cannot be captured falls back to 'static' with a
  warning; models with sliding-window or hybrid layers use the former loop (`_generate_chunk_legacy`).
- Left padding inside a chunk, attention mask, position ids counted from each row's first real token,
  so a row's tokens do not depend on the other rows' lengths (up to float round-off).
- Sampling: logits / temperature, then top-p (nucleus) over the tempered distribution, then one
  multinomial draw with a `torch.Generator` seeded from `seed`, so the same seed, prompts, batch_size and
  device give the same samples, independent of the global RNG (on a GPU the draw is the same exponential
  race as `torch.multinomial`'s, without its read-back; the static loop also draws for finished rows of a
  batch, so its stream differs from the eager loop's). `temperature == 0` is greedy (argmax) and samples each
  prompt once, copying it to the n rows.
- Log-probs: `log_softmax` of the *raw* logits (before temperature and top-p), of the sampled token: the
  policy's own log π(token), which is what the trainer recomputes; at T=1, top_p=1 it is also the
  sampling log-prob.
- Rows are processed in chunks of `batch_size` rows (n samples of a prompt stay in one chunk when they fit).
- `sync_weights(model)` only re-points the engine: it shares the trainer's module, no copy. A sharded (FSDP2)
  model is copied tensor by tensor into a private copy on its device (`copy_dtype`), freed by `sleep` during
  the update.
- Memory and context: `kv_budget_bytes` bounds the rows of a chunk by the bytes of their keys and values, not by
  count; a call whose prompt + `max_new_tokens` exceeds the model's context is clipped to it, with a warning.
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm
from transformers import DynamicCache

from fr3e.engines.base import Completion, EngineCounters, _as_ids, stop_token_ids

logger = logging.getLogger(__name__)


TESTED_TRANSFORMERS = ("5.17", "6")
"""The transformers versions the engine is tested with, [low, high) (pyproject.toml states the same range): its
fixed-shape loops hand the model a cache object of their own, whose interface transformers may change."""


def transformers_supported(version: str | None = None) -> bool:
    """Whether `version` (default: the installed transformers) is in `TESTED_TRANSFORMERS`."""
    from packaging.version import Version

    if version is None:
        import transformers

        version = transformers.__version__
    low, high = (Version(v) for v in TESTED_TRANSFORMERS)
    return low <= Version(version) < high


def kv_layout(config) -> tuple[int, int]:
    """(key/value heads, head dim) of a decoder's attention (its text config for a multimodal one)."""
    text = getattr(config, "text_config", config)
    heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    return heads, getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads


def _unwrap(model):
    """The bare module under DDP / accelerate / torch.compile wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return getattr(model, "_orig_mod", model)


_WRAPPER_PREFIXES = ("_checkpoint_wrapped_module.", "_fsdp_wrapped_module.", "_orig_mod.")


def is_sharded(model) -> bool:
    """True when some parameter is a DTensor shard (FSDP2): a forward of `model` is then a collective."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def full_weights(model):
    """Yield (name, full tensor) for every entry of `model`'s state dict, gathering FSDP2 shards.

    A collective under FSDP2: every process must iterate it to the end, in the same order (the state dict's
    order is the module order, identical on every process). Wrapper prefixes are stripped from the names.
    """
    from torch.distributed.tensor import DTensor

    for name, value in model.state_dict().items():
        for prefix in _WRAPPER_PREFIXES:
            name = name.replace(prefix, "")
        yield name, value.full_tensor() if isinstance(value, DTensor) else value


def sample_next(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None,
    race: bool | None = None,
) -> torch.Tensor:
    """Next token per row. logits: (R, V) raw; returns (R,) long. temperature 0 = argmax.

    The distribution: softmax(logits / temperature), cut to the smallest set of most likely tokens whose mass
    reaches top_p, renormalised. On a GPU (`race`, default: there) one draw per row by the exponential race:
    argmax(p / E) with E ~ Exp(1), exactly what `torch.multinomial(p, 1)` computes for one sample, with the
    same generator draws, but without its validity check, which reads a value back to the host (a stream
    synchronisation on a GPU) every step; elsewhere `torch.multinomial`. Logits that are NaN, or -inf for
    every token, raise a ValueError on a CPU at once and on a GPU when the chunk's log-probs are read back
    (`check_logprobs`).
    """
    if not logits.is_cuda:
        check_logits(logits)
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (R, V)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)  # (R, V)
        # Keep the smallest prefix whose mass reaches top_p: drop a token if the mass before it already does.
        drop = (sorted_probs.cumsum(-1) - sorted_probs) >= top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    if not (probs.is_cuda if race is None else race):  # the same draw in one operation; its check is free here
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return exponential_race(probs, generator)


BROKEN_LOGITS = ("the model gave NaN logits, or -inf for every token, {where}: its weights or inputs are broken "
                 "(a diverged update, a damaged checkpoint, a wrong dtype); resume from an earlier checkpoint or "
                 "lower the learning rate")


def check_logits(logits: torch.Tensor) -> None:
    """ValueError when a row of (R, V) logits has a NaN or no finite entry (nothing can be sampled from it)."""
    ok = logits.amax(-1) > float("-inf")  # (R,): amax is NaN where any logit is NaN, -inf where all are
    if not bool(ok.all()):
        rows = (~ok).nonzero().squeeze(-1).tolist()
        raise ValueError(BROKEN_LOGITS.format(where=f"for rows {rows[:5]} of a decode step"))


def check_logprobs(logps: torch.Tensor, lengths: list[int]) -> None:
    """ValueError when a sampled token's log-prob is NaN: the logits it was drawn from were NaN or all -inf.
    logps: (R, T) on the host; lengths: the tokens each row produced."""
    produced = torch.arange(logps.shape[1]) < torch.tensor(lengths)[:, None]  # (R, T): padding past each length
    bad = torch.isnan(logps) & produced
    if bool(bad.any()):
        r, t = bad.nonzero()[0].tolist()
        raise ValueError(BROKEN_LOGITS.format(where=f"at token {t} of row {r}"))


def exponential_race(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row from unnormalised probs (R, V): argmax(p / E), E ~ Exp(1); (R,) long."""
    race = torch.empty_like(probs).exponential_(generator=generator)  # (R, V)
    return (probs / race).argmax(-1)


def token_logprob(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[tokens] per row. (R, V), (R,) -> (R,). On a GPU without writing the (R, V) fp32
    log-softmax (a large vocabulary makes that write a visible share of a decode step); on a CPU in fewer
    operations (small models are bound by the per-operation overhead there)."""
    logits = logits.float()
    if not logits.is_cuda:
        return torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, None]).squeeze(-1)
    return logits.gather(-1, tokens[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


# The decode step's batch sizes under CUDA graphs: finished rows are compacted away when the live rows fit the next
# smaller size of this ladder (one graph is captured per size used; the chunk's own size is always one).
_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
DECODERS = ("auto", "eager", "static", "graph")


def _bucket(live: int, rows: int) -> int:
    """The smallest ladder size that holds `live` rows, at most `rows` (the chunk)."""
    return min([b for b in _BUCKETS if b >= live] + [rows])


def sample_with_logprob(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None,
    fused: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(next token, its log-prob under the raw logits) per row: (R, V) -> (R,), (R,).

    On a CPU: `sample_next` and `token_logprob`. On a GPU, where a 152k vocabulary makes every pass over the
    (R, V) logits a visible share of a decode step: one fp32 log-softmax, read by both the log-prob and, at
    T = 1 and top_p = 1, the draw, an exponential race in log space (argmax(log p - log E) = argmax(p / E)):
    about half the memory traffic of softmax + separate log-sum-exp. `fused` forces either (default: on a GPU).
    """
    if not (logits.is_cuda if fused is None else fused):
        nxt = sample_next(logits, temperature, top_p, generator)
        return nxt, token_logprob(logits, nxt)
    logp = torch.log_softmax(logits, dim=-1, dtype=torch.float32)  # (R, V)
    if temperature == 0:
        nxt = logits.argmax(-1)
    elif temperature == 1.0 and top_p >= 1.0:
        race = torch.empty_like(logp).exponential_(generator=generator).log_()  # (R, V)
        nxt = torch.sub(logp, race, out=race).argmax(-1)
    else:
        nxt = sample_next(logits, temperature, top_p, generator)
    return nxt, logp.gather(-1, nxt[:, None]).squeeze(-1)


class _StaticKV:
    """A fixed-shape KV cache for one decode step: per layer (B, H_kv, L, D) key and value buffers.

    `update` writes the step's keys and values at cache index `index` (a (1,) tensor the decode loop advances in
    place, so a captured CUDA graph sees the new index) and returns the whole buffers, attended under the loop's mask.
    It offers what the attention layers of the Hugging Face decoders (Llama, Qwen2, Qwen3, Mistral, ...) call.
    """

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], index: torch.Tensor):
        self.keys, self.values, self.index = keys, values, index

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys.index_copy_(2, self.index, key_states)
        values.index_copy_(2, self.index, value_states)
        return keys, values


def cache_kwarg(model) -> str:
    """The keyword under which `model.forward` takes its KV cache: `cache` (transformers >= 5.2x, where
    `past_key_values` is a deprecated alias) or `past_key_values` (earlier releases, which would silently
    swallow an unknown `cache=` into **kwargs and leave the cache empty)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _record_step(t, nxt, logp, live, done, eos, tokens, logps, lengths, stopped) -> torch.Tensor:
    """Write decode step `t` (sampled tokens `nxt`, their log-probs `logp`, one per decoded row; `live` maps
    them to output rows) into the rows not yet finished; rows that emitted an EOS id get their length and
    stop flag. Returns `done` with those rows added."""
    rec = live[~done]
    tokens[rec, t] = nxt[~done]
    logps[rec, t] = logp[~done]
    hit_eos = torch.isin(nxt, eos) & ~done
    lengths[live[hit_eos]] = t + 1
    stopped[live[hit_eos]] = True
    return done | hit_eos


@dataclass
class _Prefix:
    """Every unique prompt of a chunk without its last token, right-aligned at width W (cache positions
    [W - len + 1, W)), and the prompt of each row."""

    keys: list[torch.Tensor]  # per layer (U, H_kv, W, D)
    values: list[torch.Tensor]  # per layer (U, H_kv, W, D)
    mask: torch.Tensor  # (U, W) bool: True at the prompt's own tokens
    last: torch.Tensor  # (U,) long: the prompt's last token, fed by the first decode step
    position: torch.Tensor  # (U,) long: its position id (prompt length - 1)
    rows: torch.Tensor  # (R,) long: the unique prompt of each row

    @property
    def width(self) -> int:
        return self.mask.shape[1]


class HFEngine:
    """Rollouts from a Hugging Face causal LM with a KV cache (see module docstring)."""

    def __init__(
        self,
        model,
        tokenizer=None,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        batch_size: int = 256,
        device: str | torch.device | None = None,
        progress: bool = False,
        prune_fraction: float = 0.125,
        decode: str = "auto",
        share_prefixes: bool = True,
        check_every: int | None = None,
        kv_budget_bytes: int = 0,
        copy_dtype: torch.dtype | None = None,
    ):
        """model: a causal LM (shared, not copied). tokenizer: only read for eos/pad ids (or pass the ids).
        batch_size: rows (prompt × sample) decoded together. prune_fraction: drop finished rows from the
        batch once at least this share of the live rows has finished (our choice: 1/8, measured; eager loop).
        decode: 'auto' (CUDA graphs on a GPU, the eager loop elsewhere), 'eager', 'static' or 'graph' (module
        docstring). share_prefixes: prefill a prompt that is a prefix of another prompt of its chunk from that
        prompt's keys and values. check_every: steps between the static loop's read-backs (default: 16 on a GPU,
        where each read-back is a stream synchronisation, and every step on a CPU, where it is free).
        kv_budget_bytes: when > 0, rows per chunk are also bounded so that their keys and values (every layer,
        the chunk's longest prompt + max_new_tokens positions) fit in this many bytes (`kv_rows`).
        copy_dtype: dtype of the private copy a sharded (FSDP2) model is sampled from (e.g. torch.bfloat16
        over fp32 shards: half the memory); default the shards' dtype."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if decode not in DECODERS:
            raise ValueError(f"decode must be one of {', '.join(DECODERS)}, got {decode!r}")
        self.decode = decode
        self._cache_kw = cache_kwarg(model)
        self.share_prefixes = share_prefixes
        self.check_every = check_every
        if kv_budget_bytes < 0:
            raise ValueError(f"kv_budget_bytes must be >= 0 (0: rows only), got {kv_budget_bytes}")
        self.kv_budget_bytes = kv_budget_bytes
        self.copy_dtype = copy_dtype
        self._graphs_ok = True
        self._static_ok = transformers_supported()
        if not self._static_ok and decode in ("static", "graph", "auto"):
            import transformers

            logger.warning("transformers %s is outside the range the HF engine is tested with (>=%s,<%s): it decodes "
                           "with the eager loop (DynamicCache) instead of the fixed-shape loops",
                           transformers.__version__, *TESTED_TRANSFORMERS)
        self._copy = None
        self.sync_weights(model)
        config = self.model.config
        generation_config = getattr(self.model, "generation_config", None)
        eos_ids = stop_token_ids(tokenizer, generation_config, extra=eos_token_id)
        if not eos_ids:
            eos_ids = _as_ids(config.eos_token_id)
        if not eos_ids:
            raise ValueError("no EOS token id: pass tokenizer=... or eos_token_id=...")
        if pad_token_id is None:
            pad_token_id = getattr(tokenizer, "pad_token_id", None)
        if pad_token_id is None:
            pad_token_id = getattr(config, "pad_token_id", None)
        self.eos_token_ids = eos_ids  # every id that stops a row (tokenizer, generation config, end of turn)
        self.eos_token_id = eos_ids[0]
        self.pad_token_id = int(pad_token_id if pad_token_id is not None else eos_ids[0])
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else None
        self.progress = progress
        self.prune_fraction = prune_fraction
        self.counters = EngineCounters()

    def sync_weights(self, model) -> None:
        """Sample from `model`'s current weights from the next generate() on.

        A plain module (one process, DDP) is shared, not copied. A sharded one (FSDP2) cannot be sampled from
        locally (each of its forwards is a collective, and processes decode different numbers of tokens), so
        its full weights are gathered into a private unsharded copy on the model's device, in `copy_dtype`, as a
        vLLM engine gets them: one tensor at a time (gathered, copied in place, dropped), so neither the whole
        state dict nor a host-RAM copy ever exists. That gather is a collective: every process calls
        sync_weights at the same points (the trainer does, after each step). `sleep` frees the copy while the
        trainer updates; the next sync_weights builds it again.
        """
        model = _unwrap(model)
        if not is_sharded(model):
            self.model, self._copy = model, None
            return
        device = next(model.parameters()).device
        if self._copy is None:
            from transformers import AutoModelForCausalLM

            dtype = self.copy_dtype or next(model.parameters()).dtype
            with torch.device(device):  # allocated where it samples, never staged in host memory
                self._copy = AutoModelForCausalLM.from_config(model.config, dtype=dtype)
            self._copy.generation_config = model.generation_config
            self._copy.eval()
        target = self._copy.state_dict()
        seen = set()
        with torch.no_grad():
            for name, tensor in full_weights(model):
                if name not in target:
                    raise RuntimeError(f"gathered weight {name!r} is not in the engine's copy of the model")
                target[name].copy_(tensor)
                seen.add(name)
                del tensor
        missing = [m for m in target if m not in seen and "lm_head" not in m]  # lm_head may be tied
        if missing:
            raise RuntimeError(f"gathered weights do not cover the model: missing {missing[:5]}")
        self.model = self._copy

    def sleep(self) -> None:
        """Free the private copy of a sharded model while the trainer updates (a shared model is untouched);
        the trainer's next `sync_weights` builds it again."""
        if self._copy is not None:
            self._copy, self.model = None, None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def kv_rows(self, positions: int) -> int | None:
        """Rows whose keys and values over `positions` positions fit in `kv_budget_bytes` (None: no budget)."""
        if not self.kv_budget_bytes:
            return None
        config = self.model.config
        layers = getattr(config, "text_config", config).num_hidden_layers
        heads, head_dim = kv_layout(config)
        itemsize = next(self.model.parameters()).element_size()
        per_row = 2 * layers * heads * head_dim * positions * itemsize  # keys and values
        return max(1, self.kv_budget_bytes // per_row)

    def context_clip(self, prompt_ids: list[list[int]], max_new_tokens: int) -> int:
        """`max_new_tokens`, lowered so the longest prompt plus its response fits the model's context
        (`max_position_embeddings`), with a warning; a prompt that already fills the context is an error."""
        limit = getattr(getattr(self.model.config, "text_config", self.model.config), "max_position_embeddings", None)
        longest = max((len(p) for p in prompt_ids), default=0)
        if not limit or longest + max_new_tokens <= limit:
            return max_new_tokens
        room = limit - longest
        if room < 1:
            raise ValueError(f"a prompt of {longest} tokens fills the model's context of {limit} positions; shorten "
                             "it (data.max_prompt_tokens) or use a model with a longer context")
        logger.warning("generation clipped to %d new tokens (asked %d): the longest prompt of this call has %d tokens "
                       "and the model's context is %d positions", room, max_new_tokens, longest, limit)
        self.counters.extra["context_clipped_calls"] = self.counters.extra.get("context_clipped_calls", 0) + 1
        return room

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
        if self.model is None:
            raise RuntimeError("the engine is asleep (its copy of a sharded model was freed for the update); call "
                               "sync_weights(model) before generate")
        start = time.perf_counter()
        max_new_tokens = self.context_clip(prompt_ids, max_new_tokens)
        device = self.device or next(self.model.parameters()).device
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())  # follows the global RNG (torch.manual_seed)
        generator = torch.Generator(device=device).manual_seed(seed)
        n_draw = 1 if temperature == 0 else n  # greedy: one sample per prompt, copied n times
        rows = [(i, k) for i in range(len(prompt_ids)) for k in range(n_draw)]
        results: list[list[Completion | None]] = [[None] * n_draw for _ in prompt_ids]
        per_chunk = self.batch_size
        kv = self.kv_rows(max((len(p) for p in prompt_ids), default=0) + max_new_tokens)
        if kv is not None:
            per_chunk = min(per_chunk, kv)
        chunks = [rows[s : s + per_chunk] for s in range(0, len(rows), per_chunk)]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for chunk in tqdm(chunks, desc="generate", disable=not self.progress, leave=False):
                    completions = self._generate_chunk(
                        prompt_ids, chunk, max_new_tokens, temperature, top_p, generator, device
                    )
                    for (i, k), completion in zip(chunk, completions):
                        results[i][k] = completion
        finally:
            self.model.train(was_training)
        if n_draw < n:
            results = [[r[0]] + [Completion(list(r[0].token_ids), list(r[0].logprobs), r[0].finish_reason)
                                 for _ in range(n - 1)] for r in results]
        c = self.counters
        c.calls += 1
        c.prompt_tokens += n * sum(len(p) for p in prompt_ids)
        c.generated_tokens += sum(len(x.token_ids) for r in results for x in r)
        c.seconds += time.perf_counter() - start
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------------------------------ dispatch
    def _decoder(self, device: torch.device) -> str:
        """The decode loop for this model on `device`: 'legacy', 'eager', 'static' or 'graph' (module docstring)."""
        config = self.model.config
        layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
        sliding = getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True)
        if layer_types != {"full_attention"} or sliding:
            return "legacy"  # sliding-window or hybrid layers: their caches keep part of the prefix only
        choice = self.decode
        if choice == "auto":
            choice = "graph" if device.type == "cuda" else "eager"
        if choice in ("static", "graph") and not self._static_ok:
            return "eager"  # an untested transformers: its cache interface may not take our fixed-shape cache
        if choice == "graph" and (device.type != "cuda" or not self._graphs_ok):
            choice = "static"
        if choice in ("static", "graph") and getattr(config, "_attn_implementation", "sdpa") not in ("sdpa", "eager"):
            choice = "eager"  # the static loop hands the attention a 4-D mask, which sdpa and eager take
        return choice

    def _generate_chunk(self, prompt_ids, chunk, max_new_tokens, temperature, top_p, generator, device):
        """Decode one chunk of (prompt index, sample index) rows; returns one Completion per row."""
        decoder = self._decoder(device)
        self.counters.extra[f"chunks_{decoder}"] = self.counters.extra.get(f"chunks_{decoder}", 0) + 1
        if decoder == "legacy":
            return self._generate_chunk_legacy(prompt_ids, chunk, max_new_tokens, temperature, top_p, generator,
                                               device)
        prefix = self._prefill(prompt_ids, chunk, device)
        if decoder == "eager":
            out = self._decode_dynamic(prefix, max_new_tokens, temperature, top_p, generator, device)
        else:
            out = self._decode_static(prefix, max_new_tokens, temperature, top_p, generator, device,
                                      graphs=decoder == "graph")
        tokens, logps, lengths, stopped = out
        R = len(chunk)
        tokens, logps = tokens[:R].cpu(), logps[:R].cpu()
        lengths, stopped = lengths[:R].cpu().tolist(), stopped[:R].cpu().tolist()
        check_logprobs(logps, lengths)
        return [
            Completion(tokens[r, : lengths[r]].tolist(), logps[r, : lengths[r]].tolist(),
                       "stop" if stopped[r] else "length")
            for r in range(R)
        ]

    # ------------------------------------------------------------------------------------------- prefill
    def _prefill(self, prompt_ids, chunk, device) -> _Prefix:
        """Keys and values of every row's prompt minus its last token, each prefix computed once.

        A prompt of the chunk that is a prefix of another (FR3E's states S_j of one base trajectory, a prompt repeated
        for its n samples) reads its keys and values from the longest prompt that extends it (its root): only the
        roots are prefilled. The last prompt token of every row is left to the first decode step, which yields the
        logits of the first sampled token for roots and prefixes alike.
        """
        unique = list(dict.fromkeys(i for i, _ in chunk))  # prompts of this chunk, first-seen order
        prompts = {i: list(prompt_ids[i]) for i in unique}
        roots: list[int] = []
        root_of: dict[int, int] = {}
        for i in sorted(unique, key=lambda i: -len(prompts[i])):  # longest first: a root precedes its prefixes
            p = prompts[i]
            found = next((r for r in roots if prompts[r][: len(p)] == p), None) if self.share_prefixes else None
            root_of[i] = i if found is None else found
            if found is None:
                roots.append(i)
        W = max(len(p) - 1 for p in prompts.values())
        filled = [r for r in roots if len(prompts[r]) > 1]  # a one-token prompt has nothing to prefill
        slot = {r: k for k, r in enumerate(filled)}
        c = self.counters.extra
        c["prefill_computed_tokens"] = c.get("prefill_computed_tokens", 0) + len(unique) + sum(
            len(prompts[r]) - 1 for r in filled)  # roots' prefixes + every prompt's last token
        c["prefix_shared_tokens"] = c.get("prefix_shared_tokens", 0) + sum(
            len(prompts[i]) - 1 for i in unique if root_of[i] != i)
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        if filled:
            ids = torch.full((len(filled), W), self.pad_token_id, dtype=torch.long)  # (U, W) left-padded
            mask = torch.zeros((len(filled), W), dtype=torch.long)  # (U, W)
            for k, r in enumerate(filled):
                p = prompts[r][:-1]
                ids[k, W - len(p) :] = torch.tensor(p, dtype=torch.long)
                mask[k, W - len(p) :] = 1
            ids, mask = ids.to(device), mask.to(device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (U, W): 0 at each row's first real token
            cache = DynamicCache(config=self.model.config)
            self.model(input_ids=ids, attention_mask=mask, position_ids=positions, **{self._cache_kw: cache}, use_cache=True,
                       logits_to_keep=1)
            # Prompt u, cache position j >= W - len_u reads its root's position (W - len_root) + (j - (W - len_u)).
            lens = torch.tensor([len(prompts[i]) - 1 for i in unique])  # (U,)
            root_lens = torch.tensor([len(prompts[root_of[i]]) - 1 for i in unique])  # (U,)
            src = torch.tensor([slot.get(root_of[i], 0) for i in unique])  # (U,)
            rel = torch.arange(W)[None, :] - (W - lens[:, None])  # (U, W)
            valid = rel >= 0
            src_pos = torch.where(valid, W - root_lens[:, None] + rel, 0).to(device)  # (U, W)
            src_row = torch.where(valid, src[:, None], 0).to(device)  # (U, W)
            for layer in cache.layers:
                keys.append(layer.keys[src_row, :, src_pos].permute(0, 2, 1, 3))  # (U, H_kv, W, D)
                values.append(layer.values[src_row, :, src_pos].permute(0, 2, 1, 3))
            prompt_mask = valid.to(device)
        else:
            prompt_mask = torch.zeros((len(unique), W), dtype=torch.bool, device=device)
        last = torch.tensor([prompts[i][-1] for i in unique], dtype=torch.long, device=device)  # (U,)
        position = torch.tensor([len(prompts[i]) - 1 for i in unique], dtype=torch.long, device=device)  # (U,)
        index = {i: u for u, i in enumerate(unique)}
        rows = torch.tensor([index[i] for i, _ in chunk], dtype=torch.long, device=device)  # (R,)
        return _Prefix(keys, values, prompt_mask, last, position, rows)

    # ------------------------------------------------------------------------------------- decode loops
    def _decode_dynamic(self, prefix: _Prefix, max_new_tokens, temperature, top_p, generator, device):
        """The eager loop: a `DynamicCache` that grows by one position per step, finished rows pruned at once
        (prune_fraction), one host synchronisation per step (free on a CPU). The first step runs once per unique
        prompt; its logits and cache are then copied to the prompt's sample rows. Returns (tokens, logps,
        lengths, stopped) per row."""
        R, expand = prefix.rows.shape[0], prefix.rows.shape[0] != prefix.last.shape[0]
        cache = DynamicCache(config=self.model.config)
        for layer, (k, v) in enumerate(zip(prefix.keys, prefix.values)):
            cache.update(k.contiguous(), v.contiguous(), layer)
        mask = prefix.mask.long()  # (U, W)
        nxt, next_position = prefix.last, prefix.position  # (U,), (U,)
        tokens = torch.full((R, max_new_tokens), self.pad_token_id, dtype=torch.long, device=device)  # (R, T)
        logps = torch.zeros((R, max_new_tokens), dtype=torch.float32, device=device)  # (R, T)
        lengths = torch.full((R,), max_new_tokens, dtype=torch.long, device=device)  # (R,)
        stopped = torch.zeros(R, dtype=torch.bool, device=device)  # (R,)
        eos = torch.tensor(self.eos_token_ids, dtype=torch.long, device=device)  # (E,)
        live = torch.arange(R, device=device)  # (A,) original row of each decoded row
        done = torch.zeros(R, dtype=torch.bool, device=device)  # (A,) finished but not yet pruned
        for t in range(max_new_tokens):
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)  # (A, W + t + 1)
            out = self.model(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_position[:, None],
                             **{self._cache_kw: cache}, use_cache=True)
            logits = out.logits[:, -1, :]  # (A, V)
            next_position = next_position + 1
            if t == 0 and expand:  # from unique prompts to rows
                cache.batch_select_indices(prefix.rows)
                logits, mask, next_position = logits[prefix.rows], mask[prefix.rows], next_position[prefix.rows]
            nxt, logp = sample_with_logprob(logits, temperature, top_p, generator)  # (A,), (A,)
            done = _record_step(t, nxt, logp, live, done, eos, tokens, logps, lengths, stopped)
            if t == max_new_tokens - 1 or bool(done.all()):
                break
            if int(done.sum()) >= max(1, self.prune_fraction * len(live)):  # drop finished rows
                keep = (~done).nonzero().squeeze(-1)  # (A',)
                cache.batch_select_indices(keep)
                live, nxt, mask, next_position = live[keep], nxt[keep], mask[keep], next_position[keep]
                done = done[keep]
        return tokens, logps, lengths, stopped

    def _decode_static(self, prefix: _Prefix, max_new_tokens, temperature, top_p, generator, device, graphs: bool):
        """The fixed-shape loop: a preallocated KV cache of W + max_new_tokens positions (rounded up to 64), every
        row writing step t at cache index W + t under a mask computed from that index, so each step has the same
        shapes and, on CUDA, runs as one replay of a captured graph (`graphs`). Finished rows are compacted away
        when the live rows fit the next smaller `_BUCKETS` size; the host reads the device only every
        `check_every` steps (every step on a CPU). Rows past the live ones (padding of a bucket) write into a
        spare last row. Returns (tokens, logps, lengths, stopped) with R + 1 rows."""
        config, model = self.model.config, self.model
        R, W, T = prefix.rows.shape[0], prefix.width, max_new_tokens
        rows = prefix.rows
        L = -(-(W + T) // 64) * 64  # cache length, a multiple of 64 for aligned attention kernels
        param = next(model.parameters())
        heads, head_dim = kv_layout(config)
        shape = (R, heads, L, head_dim)
        keys = [torch.zeros(shape, dtype=param.dtype, device=device) for _ in range(config.num_hidden_layers)]
        values = [torch.zeros(shape, dtype=param.dtype, device=device) for _ in range(config.num_hidden_layers)]
        for buf, pre in zip(keys + values, prefix.keys + prefix.values):
            buf[:, :, :W] = pre[rows]
        prefix.keys, prefix.values = [], []  # free the gathered copies
        ar = torch.arange(L, device=device)  # (L,)
        base = torch.zeros((R, L), dtype=torch.bool, device=device)  # (R, L): each row's prompt positions
        base[:, :W] = prefix.mask[rows]
        decode_region = ar >= W  # (L,)
        ids = prefix.last[rows][:, None]  # (R, 1) the step's input token per row
        pos = prefix.position[rows][:, None]  # (R, 1) its position id
        index = torch.full((1,), W, dtype=torch.long, device=device)  # cache index of the step
        additive = getattr(config, "_attn_implementation", "sdpa") == "eager"
        neg = torch.finfo(param.dtype).min

        def forward(b: int) -> torch.Tensor:
            allowed = base[:b] | (decode_region & (ar <= index))  # (b, L)
            mask = allowed[:, None, None, :]  # (b, 1, 1, L)
            if additive:  # the eager attention adds its mask
                mask = torch.where(mask, 0.0, neg).to(param.dtype)
            cache = _StaticKV([k[:b] for k in keys], [v[:b] for v in values], index)
            out = model(input_ids=ids[:b], attention_mask=mask, position_ids=pos[:b], **{self._cache_kw: cache},
                        use_cache=True)
            return out.logits[:, -1, :]  # (b, V)

        captured: dict[int, tuple] = {}
        pool = None

        def step(b: int) -> torch.Tensor:
            nonlocal graphs, pool
            if not graphs:
                return forward(b)
            if b not in captured:
                try:
                    t0 = time.perf_counter()
                    stream = torch.cuda.Stream(device)
                    stream.wait_stream(torch.cuda.current_stream(device))
                    with torch.cuda.stream(stream):  # warm-up (writes this step's keys, which the replay rewrites)
                        forward(b)
                    torch.cuda.current_stream(device).wait_stream(stream)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph, pool=pool):
                        out = forward(b)
                    pool = graph.pool()
                    captured[b] = (graph, out)
                    extra = self.counters.extra
                    extra["graph_captures"] = extra.get("graph_captures", 0) + 1
                    extra["graph_capture_s"] = extra.get("graph_capture_s", 0.0) + time.perf_counter() - t0
                except Exception as exc:  # a model whose step cannot be captured: decode it without graphs
                    logger.warning("CUDA graph capture of the decode step failed (%s: %s); decoding with the static "
                                   "cache without graphs", type(exc).__name__, exc)
                    self._graphs_ok = graphs = False
                    return forward(b)
            graph, out = captured[b]
            graph.replay()
            return out

        tokens = torch.full((R + 1, T), self.pad_token_id, dtype=torch.long, device=device)  # (R + 1, T)
        logps = torch.zeros((R + 1, T), dtype=torch.float32, device=device)  # (R + 1, T)
        lengths = torch.full((R + 1,), T, dtype=torch.long, device=device)  # (R + 1,)
        stopped = torch.zeros(R + 1, dtype=torch.bool, device=device)  # (R + 1,)
        eos = torch.tensor(self.eos_token_ids, dtype=torch.long, device=device)  # (E,)
        live = torch.arange(R, device=device)  # (b,) original row of each decoded row (R: padding)
        done = torch.zeros(R, dtype=torch.bool, device=device)  # (b,)
        b = R
        check = max(1, self.check_every or (16 if device.type == "cuda" else 1))
        for t in range(T):
            index.fill_(W + t)
            logits = step(b)  # (b, V)
            nxt, logp = sample_with_logprob(logits, temperature, top_p, generator)  # (b,), (b,)
            tokens[live, t] = nxt  # a finished row's later tokens are cut off by its length
            logps[live, t] = logp
            hit_eos = torch.isin(nxt, eos) & ~done
            lengths[live] = torch.where(hit_eos, t + 1, lengths[live])
            stopped[live] = stopped[live] | hit_eos
            done = done | hit_eos
            if t == T - 1:
                break
            ids[:b, 0] = nxt
            pos[:b] += 1
            if (t + 1) % check:
                continue
            n_live = int((~done).sum())  # the only read-back: every `check` steps
            if n_live == 0:
                break
            smaller = _bucket(n_live, R)
            if smaller < b:  # move the live rows to the front, decode at the smaller size from now on
                keep = (~done).nonzero().squeeze(-1)  # (n_live,)
                for buf in keys + values:
                    buf[:n_live] = buf[keep]
                base[:n_live], ids[:n_live], pos[:n_live] = base[keep], ids[keep], pos[keep]
                live = torch.cat([live[keep], live.new_full((smaller - n_live,), R)])
                self.counters.extra["compactions"] = self.counters.extra.get("compactions", 0) + 1
                done = torch.cat([done.new_zeros(n_live), done.new_ones(smaller - n_live)])
                b = smaller
        return tokens, logps, lengths, stopped

    def _generate_chunk_legacy(self, prompt_ids, chunk, max_new_tokens, temperature, top_p, generator, device):
        """The loop for models with sliding-window or hybrid layers: each unique prompt prefilled with its own
        `DynamicCache`, copied to its sample rows, decoded with finished rows pruned."""
        unique = list(dict.fromkeys(i for i, _ in chunk))  # prompts of this chunk, first-seen order
        slot = {i: u for u, i in enumerate(unique)}
        width = max(len(prompt_ids[i]) for i in unique)
        ids = torch.full((len(unique), width), self.pad_token_id, dtype=torch.long)  # (U, L) left-padded
        mask = torch.zeros((len(unique), width), dtype=torch.long)  # (U, L)
        for u, i in enumerate(unique):
            p = prompt_ids[i]
            ids[u, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[u, width - len(p) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (U, L): 0 at each row's first real token
        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, **{self._cache_kw: cache},
                         use_cache=True, logits_to_keep=1)
        logits = out.logits[:, -1, :]  # (U, V)
        self.counters.extra["prefill_computed_tokens"] = (
            self.counters.extra.get("prefill_computed_tokens", 0) + int(mask.sum())
        )

        row_slot = torch.tensor([slot[i] for i, _ in chunk], device=device)  # (R,)
        if len(unique) != len(chunk):  # copy each prompt's cache to its sample rows
            cache.batch_select_indices(row_slot)
            logits, mask = logits[row_slot], mask[row_slot]  # (R, V), (R, L)
        next_position = positions[row_slot, -1] + 1  # (R,)

        R = len(chunk)
        tokens = torch.full((R, max_new_tokens), self.pad_token_id, dtype=torch.long, device=device)  # (R, T)
        logps = torch.zeros((R, max_new_tokens), dtype=torch.float32, device=device)  # (R, T)
        lengths = torch.full((R,), max_new_tokens, dtype=torch.long, device=device)  # (R,)
        stopped = torch.zeros(R, dtype=torch.bool, device=device)  # (R,)
        eos = torch.tensor(self.eos_token_ids, dtype=torch.long, device=device)  # (E,)
        live = torch.arange(R, device=device)  # (A,) original row of each decoded row
        done = torch.zeros(R, dtype=torch.bool, device=device)  # (A,) finished but not yet pruned
        for t in range(max_new_tokens):
            nxt = sample_next(logits, temperature, top_p, generator)  # (A,)
            logp = token_logprob(logits, nxt)  # (A,)
            done = _record_step(t, nxt, logp, live, done, eos, tokens, logps, lengths, stopped)
            if t == max_new_tokens - 1 or bool(done.all()):
                break
            if int(done.sum()) >= max(1, self.prune_fraction * len(live)):  # drop finished rows
                keep = (~done).nonzero().squeeze(-1)  # (A',)
                cache.batch_select_indices(keep)
                live, nxt, mask, next_position = live[keep], nxt[keep], mask[keep], next_position[keep]
                done = done[keep]
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)  # (A, L + t + 1)
            out = self.model(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_position[:, None],
                             **{self._cache_kw: cache}, use_cache=True)
            logits = out.logits[:, -1, :]  # (A, V)
            next_position = next_position + 1

        tokens, logps, lengths, stopped = tokens.cpu(), logps.cpu(), lengths.cpu().tolist(), stopped.cpu().tolist()
        check_logprobs(logps, lengths)
        return [
            Completion(tokens[r, : lengths[r]].tolist(), logps[r, : lengths[r]].tolist(),
                       "stop" if stopped[r] else "length")
            for r in range(R)
        ]
