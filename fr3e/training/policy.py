"""The policy and what runs it: loading the model, the rollout engine over it, the training prompts, and the
chunked log-prob / entropy pass the update and the anchors read."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from fr3e.method import entropy as entropy_mod
from fr3e.training.config import TrainConfig


def precision(config: TrainConfig) -> tuple[torch.dtype, torch.dtype | None]:
    """(dtype of the weights and of the optimizer's states, dtype the forwards compute in under autocast or None).

    `model.dtype: bfloat16` (or float16) outside FSDP keeps fp32 master weights and computes in the half dtype:
    AdamW on half-precision weights does not learn at the paper's learning rate (2e-6 · a unit update is far
    below half the bf16 spacing of a weight near 0.02, ~6e-5, so almost every update rounds away). Under FSDP the
    launch's mixed-precision policy keeps fp32 shards and computes in bf16, so the weights load as asked."""
    from fr3e.training.distributed import fsdp_requested

    want = getattr(torch, config.model.dtype)
    if want == torch.float32 or fsdp_requested():
        return want, None
    return torch.float32, want


def load_policy(config: TrainConfig, cache_dir: str | Path = "runs/cache", progress: bool = True):
    """(model, tokenizer, model_source) for the config's profile; weights in `precision(config)`'s master dtype."""
    from transformers import AutoModelForCausalLM

    from fr3e.data.hub import resolve_model  # the names every command accepts

    dtype = precision(config)[0]
    if config.profile == "tiny":
        from fr3e.tasks.tokenizer import load_tokenizer

        source = Path(resolve_model(config.model.base, cache_dir=cache_dir, progress=progress,
                                    world=config.data.world))
        tokenizer = load_tokenizer(source)
    else:
        from transformers import AutoTokenizer

        source = resolve_model(config.model.base, tiny_names=False)
        tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=dtype)
    if config.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    training_mode(model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, str(source)


DROPOUT_ATTRIBUTES = ("attention_dropout", "hidden_dropout", "dropout", "dropout_rate", "activation_dropout")
"""Module attributes through which transformers' models apply dropout functionally (Qwen2/3: `attention_dropout`)."""


def training_mode(model):
    """`model` in training mode with every dropout at 0, in place; returns it.

    `from_pretrained` returns a model in eval mode, and transformers' gradient checkpointing acts only in training
    mode: a checkpointed recipe left in eval mode keeps every layer's activations for the backward (one FR3E update
    of the one-GPU recipe at the 1.5B layout peaked at 99.8 GB instead of about half that). Dropout stays off, as in
    TRL's `disable_dropout`: the old log-probs, the ratios and the entropies must come from one deterministic policy
    (Qwen2.5 and the tiny Qwen3 models have none anyway, so their numbers do not change). The model's config
    is left as loaded, so a saved checkpoint keeps the base model's settings."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for name in DROPOUT_ATTRIBUTES:
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)
    return model.train()


def build_engine(config: TrainConfig, policy, tokenizer, model_source: str, world: int = 1):
    """The rollout engine of `config.rollout.engine` over `policy` (HF: shares or copies its weights; vLLM:
    loads `model_source` and receives weights through sync_weights)."""
    cfg = config.rollout
    if cfg.engine == "vllm":
        from fr3e.engines.vllm import VLLMEngine

        return VLLMEngine(model_source, tokenizer=tokenizer, gpu_memory_utilization=cfg.gpu_memory_utilization,
                          tensor_parallel_size=cfg.tensor_parallel_size, dtype=config.model.dtype,
                          seed=config.seed, external_launcher=world > 1,
                          max_model_len=config.max_sequence_tokens)  # not the model's full context
    from fr3e.engines.hf import HFEngine

    # A sharded policy is sampled from a private copy in the recipe's dtype (bf16 over fp32 FSDP shards).
    return HFEngine(policy, tokenizer, batch_size=cfg.batch_size, kv_budget_bytes=int(cfg.kv_cache_gb * 1e9),
                    copy_dtype=getattr(torch, config.model.dtype))


def release_cached_memory() -> None:
    """Return what PyTorch's caching allocator holds (freed gradients, the update's activations) to the device,
    so a colocated vLLM waking its weights and KV cache after the update finds the memory free. A no-op without a
    GPU (a garbage collection every step would only cost time there)."""
    import gc

    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def load_train_prompts(config: TrainConfig):
    """The training set as a `datasets.Dataset` with `prompt` and `answer` columns."""
    if config.data.train == "tiny/train":
        from fr3e.tasks.worlds import get_world

        world = get_world(config.data.world)
        return world.make_split("train", min(config.data.train_size or 4096, world.max_split_size("train")), seed=0)
    if config.data.train == "paper/train":
        from fr3e.data.paper import load_train_mix

        return load_train_mix(local=config.data.local_files or None)
    raise ValueError(f"data.train={config.data.train!r}: use 'tiny/train' or 'paper/train'")


def micro_batches(lengths: list[int], max_rows: int, max_tokens: int = 0) -> list[list[int]]:
    """Consecutive index chunks of rows with `lengths`: at most `max_rows` rows each and, when `max_tokens` > 0,
    at most `max_tokens` padded tokens (rows × the chunk's longest row); a row longer than `max_tokens` is a
    chunk of its own. Order is kept, so with `max_tokens` = 0 the chunks are the plain row-count ones."""
    if max_rows < 1 or max_tokens < 0:
        raise ValueError(f"need max_rows >= 1 and max_tokens >= 0, got {max_rows} and {max_tokens}")
    chunks: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i, n in enumerate(lengths):
        wider = max(longest, n)
        if current and (len(current) == max_rows or (max_tokens and wider * (len(current) + 1) > max_tokens)):
            chunks.append(current)
            current, wider = [], n
        current.append(i)
        longest = wider
    if current:
        chunks.append(current)
    return chunks


def pad_right(rows: list[list[int]], pad: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) ids and bool mask from ragged rows, right-padded, on `device`."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = True
    return ids.to(device), mask.to(device)


LOGPROB_CHUNK = 512  # positions per fp32 slice of the logits in token_logprobs (bounds B·512·V floats)


def _chunk_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] for one slice. logits: (B, C, V) any float dtype; targets: (B, C) long."""
    x = logits.float()  # (B, C, V): fp32 copy of this slice only
    return x.gather(-1, targets[..., None]).squeeze(-1) - torch.logsumexp(x, dim=-1)  # (B, C)


def _chunk_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Full-vocabulary entropy (nats) of one slice, differentiable. logits: (B, C, V) any float dtype -> (B, C)."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, C, V): fp32 copy of this slice only
    return -(logp.exp() * logp).sum(-1)


class _LogprobHead(torch.nn.Module):
    """Stands in for the policy's output layer during one forward: hidden states (B, L, H) -> (B, L, 2) holding the
    log-prob of each next token and the full-vocabulary entropy, computed `chunk` positions at a time, so no
    (B, L, V) tensor exists in any dtype, in the forward or the backward. Each chunk's logits are recomputed in
    the backward pass (activation checkpointing of the chunk). Called inside the model's own forward, so an FSDP
    root that owns the output layer has gathered its weight, as for the full logits."""

    def __init__(self, head: torch.nn.Module, targets: torch.Tensor, chunk: int, first: int, entropy: bool,
                 entropy_grad: bool):
        super().__init__()
        object.__setattr__(self, "head", head)  # not a submodule: the model's parameter names do not change
        self.targets, self.chunk, self.first = targets, chunk, first
        self.entropy, self.entropy_grad = entropy, entropy_grad

    def _slice(self, hidden: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.head(hidden).float()  # (B, c, V): one chunk's logits, fp32
        lse = torch.logsumexp(x, dim=-1)  # (B, c)
        logp = x.gather(-1, targets[..., None]).squeeze(-1) - lse
        if not self.entropy:
            return logp, torch.zeros_like(logp)
        with contextlib.nullcontext() if self.entropy_grad else torch.no_grad():
            ent = lse - (torch.softmax(x, dim=-1) * x).sum(-1)  # H = logsumexp − Σ p·x
        return logp, ent

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        from torch.utils.checkpoint import checkpoint

        B, L, _ = hidden.shape
        T = L - 1
        grad = torch.is_grad_enabled() and hidden.requires_grad
        pieces = [hidden.new_zeros((B, min(self.first, T), 2), dtype=torch.float32)]
        for s in range(min(self.first, T), T, self.chunk):
            h, tg = hidden[:, s: min(s + self.chunk, T)], self.targets[:, s: s + self.chunk]
            lp, en = checkpoint(self._slice, h, tg, use_reentrant=False) if grad else self._slice(h, tg)
            pieces.append(torch.stack([lp, en], dim=-1))
        pieces.append(hidden.new_zeros((B, 1, 2), dtype=torch.float32))  # the last position has no target
        return torch.cat(pieces, dim=1)  # (B, L, 2)


def _head_slot(model) -> tuple[torch.nn.Module, str] | None:
    """(module, attribute) holding the policy's output layer, through DDP-style `.module` wrappers; None when
    the model exposes none (then the full logits are used)."""
    inner = model
    while not hasattr(inner, "get_output_embeddings") and hasattr(inner, "module"):
        inner = inner.module
    get = getattr(inner, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if not isinstance(head, torch.nn.Module):
        return None
    name = next((n for n, m in inner.named_children() if m is head), None)
    return (inner, name) if name else None


def token_logprobs(model, ids: torch.Tensor, mask: torch.Tensor, want_entropy: bool = False,
                   chunk: int = LOGPROB_CHUNK, entropy_grad: bool = False, first: int = 0):
    """Log-prob of every next token, and optionally the full-vocabulary entropy, aligned on targets.

    ids, mask: (B, L). returns logp (B, L-1) fp32 for targets ids[:, 1:], entropy (B, L-1) fp32 or None.
    entropy_grad: the entropy carries gradients (an entropy bonus in the loss; implies want_entropy); otherwise
    it is computed without. first: target positions before it are not computed (0 there): the prompt and the
    shared prefix of a batch whose trained tokens all come later.

    Memory: the policy's output layer is swapped for `_LogprobHead` during the forward, so the hidden states go
    through it `chunk` positions at a time: neither the forward nor the backward ever holds (B, L, V) logits (at
    7B shapes, 8 rows × 4k × 152k logits are 10 GB in bf16, and their gradient as much again). A model without
    an output layer to swap (a test double) returns full logits, sliced the same way.
    """
    want = want_entropy or entropy_grad
    targets = ids[:, 1:]  # (B, L-1)
    slot = _head_slot(model)
    if slot is not None:
        owner, name = slot
        head = getattr(owner, name)
        setattr(owner, name, _LogprobHead(head, targets, chunk, first, want, entropy_grad))
        try:
            # use_cache=False: a scoring or training forward never decodes on, so no KV cache is built
            out = model(input_ids=ids, attention_mask=mask.long(), use_cache=False).logits[:, :-1]  # (B, L-1, 2)
        finally:
            setattr(owner, name, head)
        ent = out[..., 1] * mask[:, 1:] if want else None
        return out[..., 0], ent
    logits = model(input_ids=ids, attention_mask=mask.long(), use_cache=False).logits[:, :-1]  # (B, L-1, V)
    pieces, ents = [], []
    for s in range(0, targets.shape[1], chunk):
        lg, tg = logits[:, s: s + chunk], targets[:, s: s + chunk]  # (B, c, V), (B, c)
        if torch.is_grad_enabled() and lg.requires_grad:
            from torch.utils.checkpoint import checkpoint

            pieces.append(checkpoint(_chunk_logprobs, lg, tg, use_reentrant=False))
            if entropy_grad:
                ents.append(checkpoint(_chunk_entropy, lg, use_reentrant=False) * mask[:, 1:][:, s: s + chunk])
        else:
            pieces.append(_chunk_logprobs(lg, tg))
        if want and not (entropy_grad and lg.requires_grad and torch.is_grad_enabled()):
            ents.append(entropy_mod.token_entropy(lg.detach(), mask[:, 1:][:, s: s + chunk], chunk=chunk))
    return torch.cat(pieces, dim=1), (torch.cat(ents, dim=1) if want else None)


def step_delimiter_ids(config: TrainConfig, tokenizer) -> list[int]:
    """The token ids of the string that separates reasoning steps (the `newline` scorer's boundary):
    `fr3e.step_delimiter`, else the task's own (tiny: the world's `STEP_DELIMITER`, paper:
    `fr3e.data.paper.STEP_DELIMITER`)."""
    delimiter = config.fr3e.step_delimiter
    if not delimiter:
        if config.profile == "tiny":
            from fr3e.tasks.worlds import get_world

            STEP_DELIMITER = get_world(config.data.world).STEP_DELIMITER  # noqa: N806
        else:
            from fr3e.data.paper import STEP_DELIMITER
        delimiter = STEP_DELIMITER
    ids = tokenizer.encode(delimiter, add_special_tokens=False)
    if not ids:
        from fr3e.training.config import ConfigError

        raise ConfigError(f"fr3e.step_delimiter {delimiter!r} encodes to no token; give a string the tokenizer "
                          "knows, such as '\\n'.")
    return list(ids)
