"""The default rollout engine: a KV-cached sampling loop over a Hugging Face causal LM (CPU or GPU).

Implements `fr3e.engines.base.Engine` for the trainer (base trajectories, continuations from every state
S_j, PAPER.md "the idea" steps 1-2) and for `fr3e.evaluate`. Prompts are token-id lists; a state S_j is
prompt ⊕ response[:a_j] handed over token-exactly.

The version we implement (and why it is not `model.generate`):
- Our own loop over `model(..., cache=DynamicCache)`, not `model.generate`: on the tiny model at batch 256
  on 2 idle cores, 47k vs 38k generated tok/s at a fixed length, and 38k vs 16k tok/s on real arithmetic
  rollouts that stop at EOS (n=16 per prompt), because (a) each unique prompt is prefilled once and its KV
  cache is copied to its n sample rows, and (b) rows that emitted EOS are dropped from the batch (and the
  cache) instead of being decoded as padding until the longest row ends.
- Left padding inside a chunk, attention mask, position ids counted from each row's first real token,
  so a row's tokens do not depend on the other rows' lengths (up to float round-off).
- Sampling: logits / temperature, then top-p (nucleus) over the tempered distribution, then one
  multinomial draw with a `torch.Generator` seeded from `seed`, so the same seed, prompts and batch_size
  give the same samples, independent of the global RNG. `temperature == 0` is greedy (argmax) and
  samples each prompt once, copying it to the n rows.
- Log-probs: `log_softmax` of the *raw* logits (before temperature and top-p), of the sampled token: the
  policy's own log π(token), which is what the trainer recomputes; at T=1, top_p=1 it is also the
  sampling log-prob.
- Rows are processed in chunks of `batch_size` rows (n samples of a prompt stay in one chunk when they fit).
- `sync_weights(model)` only re-points the engine: it shares the trainer's module, no copy.
"""

from __future__ import annotations

import logging
import time

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

from fr3e.engines.base import Completion, EngineCounters, _as_ids, stop_token_ids

logger = logging.getLogger(__name__)


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
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Next token per row. logits: (R, V) raw; returns (R,) long. temperature 0 = argmax."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (R, V)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)  # (R, V)
        # Keep the smallest prefix whose mass reaches top_p: drop a token if the mass before it already does.
        drop = (sorted_probs.cumsum(-1) - sorted_probs) >= top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


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
    ):
        """model: a causal LM (shared, not copied). tokenizer: only read for eos/pad ids (or pass the ids).
        batch_size: rows (prompt × sample) decoded together. prune_fraction: drop finished rows from the
        batch once at least this share of the live rows has finished (our choice: 1/8, measured)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
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
        its full weights are gathered into a private unsharded copy, as a vLLM engine gets them. That gather is
        a collective: every process calls sync_weights at the same points (the trainer does, after each step).
        """
        model = _unwrap(model)
        if not is_sharded(model):
            self.model, self._copy = model, None
            return
        if getattr(self, "_copy", None) is None:
            from transformers import AutoModelForCausalLM

            dtype = next(model.parameters()).dtype
            self._copy = AutoModelForCausalLM.from_config(model.config, dtype=dtype)
            self._copy.generation_config = model.generation_config
        state = dict(full_weights(model))
        missing, unexpected = self._copy.load_state_dict(state, strict=False)
        if unexpected or [m for m in missing if "lm_head" not in m]:  # lm_head may be tied to the embedding
            raise RuntimeError(f"gathered weights do not match the model: missing {missing}, unexpected {unexpected}")
        device = next(model.parameters()).device
        self.model = self._copy.to(device)

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
        start = time.perf_counter()
        device = self.device or next(self.model.parameters()).device
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())  # follows the global RNG (torch.manual_seed)
        generator = torch.Generator(device=device).manual_seed(seed)
        n_draw = 1 if temperature == 0 else n  # greedy: one sample per prompt, copied n times
        rows = [(i, k) for i in range(len(prompt_ids)) for k in range(n_draw)]
        results: list[list[Completion | None]] = [[None] * n_draw for _ in prompt_ids]
        chunks = [rows[s : s + self.batch_size] for s in range(0, len(rows), self.batch_size)]
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

    def _generate_chunk(self, prompt_ids, chunk, max_new_tokens, temperature, top_p, generator, device):
        """Decode one chunk of (prompt index, sample index) rows; returns one Completion per row."""
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
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
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
            logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, nxt[:, None]).squeeze(-1)  # (A,)
            rec = live[~done]
            tokens[rec, t] = nxt[~done]
            logps[rec, t] = logp[~done]
            hit_eos = torch.isin(nxt, eos) & ~done
            lengths[live[hit_eos]] = t + 1
            stopped[live[hit_eos]] = True
            done = done | hit_eos
            if t == max_new_tokens - 1 or bool(done.all()):
                break
            if int(done.sum()) >= max(1, self.prune_fraction * len(live)):  # drop finished rows
                keep = (~done).nonzero().squeeze(-1)  # (A',)
                cache.batch_select_indices(keep)
                live, nxt, mask, next_position = live[keep], nxt[keep], mask[keep], next_position[keep]
                done = done[keep]
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)  # (A, L + t + 1)
            out = self.model(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_position[:, None],
                             cache=cache, use_cache=True)
            logits = out.logits[:, -1, :]  # (A, V)
            next_position = next_position + 1

        tokens, logps, lengths, stopped = tokens.cpu(), logps.cpu(), lengths.cpu().tolist(), stopped.cpu().tolist()
        return [
            Completion(tokens[r, : lengths[r]].tolist(), logps[r, : lengths[r]].tolist(),
                       "stop" if stopped[r] else "length")
            for r in range(R)
        ]
