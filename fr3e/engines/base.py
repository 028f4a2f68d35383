"""The rollout-engine interface shared by the HF (CPU/GPU) and vLLM (GPU) engines.

Prompts are token-id lists, never text: a state S_j = prompt ⊕ response[:a_j] is handed to the engine
exactly as the tokens the policy produced (the authors' code decodes and re-tokenizes prefixes, which is
not token-exact; see the README, "Where we differ from the authors' code").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

# End-of-turn tokens of chat templates: a base model prompted with the template ends its answer with one of
# these while its generation_config may name only the document end (Qwen2.5 base: `<|endoftext|>`).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>")


def _as_ids(value) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value if v is not None]


def stop_token_ids(tokenizer=None, generation_config=None, extra: Iterable[int] | int | None = None) -> list[int]:
    """Every token id that ends a response, in a stable order without repeats.

    The union of: `extra`, the tokenizer's `eos_token_id`, the generation config's `eos_token_id` (int or list,
    as Qwen2.5-Instruct declares two), and the chat template's end-of-turn token when the tokenizer has a
    chat template that uses one of `END_OF_TURN_TOKENS` (a base model prompted with the template ends its turn
    with it, although its generation config names only `<|endoftext|>`).
    """
    ids = _as_ids(extra)
    ids += _as_ids(getattr(tokenizer, "eos_token_id", None))
    ids += _as_ids(getattr(generation_config, "eos_token_id", None))
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str):
        for tok in END_OF_TURN_TOKENS:
            if tok in template:
                tid = tokenizer.convert_tokens_to_ids(tok)
                unk = getattr(tokenizer, "unk_token_id", None)
                if isinstance(tid, int) and tid >= 0 and tid != unk:
                    ids.append(tid)
    return list(dict.fromkeys(ids))


@dataclass
class Completion:
    """One sampled continuation of one prompt.

    token_ids: generated ids, EOS included when the sample stopped on it, no padding.
    logprobs:  log π_engine(token_ids[t] | prompt, token_ids[:t]) under the sampling distribution's
               model (before temperature/top-p), one float per generated token.
    finish_reason: "stop" (EOS emitted) or "length" (max_new_tokens reached).
    """

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str


@dataclass
class EngineCounters:
    """Cumulative cost counters, read by the trainer and the benchmark."""

    prompt_tokens: int = 0  # prefill tokens submitted (prompt length × number of prompt rows)
    generated_tokens: int = 0  # tokens sampled
    cached_prefix_tokens: int = 0  # prefill tokens served from a prefix cache (vLLM only)
    seconds: float = 0.0  # wall time spent inside generate()
    calls: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@runtime_checkable
class Engine(Protocol):
    """What the trainer and the evaluation harness need from a generator."""

    counters: EngineCounters

    def generate(
        self,
        prompt_ids: list[list[int]],
        n: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[list[Completion]]:
        """Sample `n` completions for every prompt; result[i][k] is sample k of prompt i."""
        ...

    def sync_weights(self, model) -> None:
        """Make the engine sample from `model`'s current weights (after an optimizer step)."""
        ...
