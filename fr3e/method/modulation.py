"""Adaptive advantage modulation (paper §3): α_j from the change in value along a trajectory's states.

Variants (config `fr3e.modulation`):

    paper     α_0 = 1,  α_j = exp(-(V_j - V_{j-1}))                                  (paper, eq. for α)
    official  δ_0 = 1 - V_0,  δ_j = V_j - V_{j-1},  δ̃_j = sign(δ_j)|δ_j|^1.5 / Σ_k |δ_k|^1.5,
              α_j = exp(-δ̃_j)                                                       (authors' code)
    none      α ≡ 1 (GRPO++ advantages on FR3E's rollouts; the invariance test uses it)

A state whose value rose over its predecessor is damped (α < 1), one whose value fell is amplified.
Deviation from the authors' code: the predecessor is the true S_{j-1}, not the previous state that
survived filtering. For `official`, a chain whose changes are all 0 (Σ|δ|^1.5 = 0) gives α = 1
instead of dividing by zero.
"""

from __future__ import annotations

import torch

from fr3e.method.branching import SHARED, StateKey

VARIANTS = ("paper", "official", "none")


def modulation_factors(values: torch.Tensor, variant: str = "paper", power: float = 1.5) -> torch.Tensor:
    """α for one trajectory's chain.

    values: (J,) float, V(S_0), ..., V(S_{J-1}) in state order.
    variant: "paper" | "official" | "none"; power: the sharpening exponent of "official".
    returns (J,) float, all > 0.
    """
    values = values.float()
    if values.dim() != 1:
        raise ValueError(f"values must be one chain (J,), got shape {tuple(values.shape)}")
    if variant == "none":
        return torch.ones_like(values)
    if variant == "paper":
        delta = torch.zeros_like(values)
        delta[1:] = values[1:] - values[:-1]  # (J,) with δ_0 = 0 so α_0 = 1
        return torch.exp(-delta)
    if variant == "official":
        delta = torch.empty_like(values)
        delta[0] = 1.0 - values[0]
        delta[1:] = values[1:] - values[:-1]
        mag = delta.abs().pow(power)
        total = mag.sum()
        if total <= 0:
            return torch.ones_like(values)
        sharpened = torch.sign(delta) * mag / total
        return torch.exp(-sharpened)
    raise ValueError(f"unknown modulation variant {variant!r}; use one of {list(VARIANTS)}")


def modulation_by_key(
    chains: dict[int, list[StateKey]],
    values: dict[StateKey, float],
    variant: str = "paper",
) -> dict[StateKey, float]:
    """α for every state of one or more prompts, looked up by key.

    chains: trajectory_id -> [S_0 key, S_1 key, ...] (see `fr3e.method.branching.value_chains`).
    values: key -> V(S).
    A shared S_0 gets α = 1 under "paper"/"none"; under "official" its α depends on each chain, and the
    shared S_0 takes the mean over the chains that contain it (the authors re-create S_0 per trajectory).
    A prompt with no kept trajectory keeps α(S_0) = 1.
    """
    alpha: dict[StateKey, float] = {}
    s0_parts: dict[StateKey, list[float]] = {}
    for keys in chains.values():
        v = torch.tensor([values[k] for k in keys], dtype=torch.float32)
        a = modulation_factors(v, variant).tolist()
        for key, factor in zip(keys, a):
            if key.trajectory_id == SHARED:
                s0_parts.setdefault(key, []).append(factor)
            else:
                alpha[key] = factor
    for key in values:
        if key.trajectory_id == SHARED:
            parts = s0_parts.get(key, [1.0])
            alpha[key] = sum(parts) / len(parts)
    return alpha
