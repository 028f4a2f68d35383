"""The rollout-engine interface shared by the HF (CPU/GPU) and vLLM (GPU) engines.

Prompts are token-id lists, never text: a state S_j = prompt ⊕ response[:a_j] is handed to the engine
exactly as the tokens the policy produced (the authors' code decodes and re-tokenizes prefixes, which is
not token-exact; see PAPER.md, defect 4).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable


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
