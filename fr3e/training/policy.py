"""The policy and what runs it: loading the model, the rollout engine over it, the training prompts, and the
chunked log-prob / entropy pass the update and the anchors read."""

from __future__ import annotations

from pathlib import Path

import torch

from fr3e.method import entropy as entropy_mod
from fr3e.training.config import TrainConfig


def load_policy(config: TrainConfig, cache_dir: str | Path = "runs/cache", progress: bool = True):
    """(model, tokenizer, model_source) for the config's profile."""
    from transformers import AutoModelForCausalLM

    from fr3e.data.hub import resolve_model  # the names every command accepts

    dtype = getattr(torch, config.model.dtype)
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
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, str(source)


def build_engine(config: TrainConfig, policy, tokenizer, model_source: str, world: int = 1):
    """The rollout engine of `config.rollout.engine` over `policy` (HF: shares or copies its weights; vLLM:
    loads `model_source` and receives weights through sync_weights)."""
    cfg = config.rollout
    if cfg.engine == "vllm":
        from fr3e.engines.vllm import VLLMEngine

        return VLLMEngine(model_source, tokenizer=tokenizer, gpu_memory_utilization=cfg.gpu_memory_utilization,
                          tensor_parallel_size=cfg.tensor_parallel_size, dtype=config.model.dtype,
                          seed=config.seed, external_launcher=world > 1)
    from fr3e.engines.hf import HFEngine

    return HFEngine(policy, tokenizer, batch_size=cfg.batch_size)


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


def token_logprobs(model, ids: torch.Tensor, mask: torch.Tensor, want_entropy: bool = False,
                   chunk: int = LOGPROB_CHUNK, entropy_grad: bool = False):
    """Log-prob of every next token, and optionally the full-vocabulary entropy, aligned on targets.

    ids, mask: (B, L). returns logp (B, L-1) fp32 for targets ids[:, 1:], entropy (B, L-1) fp32 or None.
    entropy_grad: the entropy carries gradients (an entropy bonus in the loss; implies want_entropy), each slice
    recomputed in the backward pass like the log-probs; otherwise it is computed on detached logits.

    Memory: the forward's logits (B, L, V) stay in the model dtype; log-probs are computed over slices of
    `chunk` positions, so no fp32 (B, L, V) copy and no (B, L, V) log_softmax exist at once (at 7B shapes,
    8 rows × 4k × 152k fp32 would be 20 GB each). With gradients, each slice is recomputed in the backward
    pass (activation checkpointing of the slice) instead of keeping its fp32 temporaries, as TRL's
    selective log-softmax and verl's chunked log-probs avoid the full-vocabulary temporaries.
    """
    logits = model(input_ids=ids, attention_mask=mask.long()).logits[:, :-1]  # (B, L-1, V), model dtype
    targets = ids[:, 1:]  # (B, L-1)
    pieces, ents = [], []
    for s in range(0, targets.shape[1], chunk):
        lg, tg = logits[:, s: s + chunk], targets[:, s: s + chunk]  # (B, c, V), (B, c)
        if torch.is_grad_enabled() and lg.requires_grad:
            from torch.utils.checkpoint import checkpoint

            pieces.append(checkpoint(_chunk_logprobs, lg, tg, use_reentrant=False))
        else:
            pieces.append(_chunk_logprobs(lg, tg))
        if entropy_grad and torch.is_grad_enabled() and lg.requires_grad:
            from torch.utils.checkpoint import checkpoint

            ents.append(checkpoint(_chunk_entropy, lg, use_reentrant=False) * mask[:, 1:][:, s: s + chunk])
        elif want_entropy or entropy_grad:
            ents.append(entropy_mod.token_entropy(lg.detach(), mask[:, 1:][:, s: s + chunk], chunk=chunk))
    logp = torch.cat(pieces, dim=1)  # (B, L-1)
    return logp, (torch.cat(ents, dim=1) if want_entropy or entropy_grad else None)


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
