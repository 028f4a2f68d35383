"""The two fixes for entropy collapse a TRL user tries first, as options of the shared policy-gradient update
(`fr3e.training.config.OptimConfig`; neither is part of FR3E or of GRPO++):

- **an entropy bonus** with a fixed or an adaptive coefficient (`entropy_coef`, `adaptive_entropy`: the rule of
  Skywork-OR1 that TRL's `GRPOConfig` adopted): the loss becomes L − c·H̄, H̄ the mean entropy of the trained
  tokens of a mini-batch over every process. With the adaptive rule, c applies only while the previous optimizer
  step's H̄ was at or below the target, and moves by ±delta after every optimizer step (up at or below the target,
  down above it) within [min, max].
- **top-entropy tokens only** (`top_entropy_quantile` ρ, "Beyond the 80/20 Rule", Wang et al. 2025): of the
  batch's trained tokens, those whose entropy under the sampling policy is among the top ρ carry the policy loss.

Where this differs from TRL's GRPOTrainer: the top-ρ threshold is taken once per rollout batch over every
process, from the entropies of the policy that sampled the batch (TRL: per micro-batch, under the current policy,
so its two updates of one batch may mask different tokens); H̄ is the token mean of the whole mini-batch, not a mean
of per-micro-batch means. The state (c and the last H̄) is saved in every checkpoint, so a resumed run continues
the same schedule.
"""

from __future__ import annotations

import math

import torch

from fr3e.method.entropy import top_share_threshold


class EntropyControl:
    """Per-run state of the entropy bonus and the top-entropy mask (`OptimConfig` fields of the same names)."""

    def __init__(self, optim) -> None:
        self.cfg = optim
        self.coef = float(optim.entropy_coef)
        self.last_entropy = math.inf  # H̄ of the previous optimizer step (none yet: the adaptive bonus waits)

    @property
    def bonus(self) -> bool:
        """Whether the loss carries an entropy term at all (the forward then computes entropy with gradients)."""
        return self.cfg.entropy_coef > 0 or self.cfg.adaptive_entropy

    @property
    def masks_tokens(self) -> bool:
        return self.cfg.top_entropy_quantile < 1

    def keep_masks(self, entropies: list[torch.Tensor], gather) -> tuple[list[torch.Tensor] | None, float]:
        """(per-rollout bool masks of the tokens that train, share of tokens kept) for `entropies`, one (n,) tensor
        of the sampling policy's entropies per rollout. `gather` concatenates a list over processes (called once on
        every process, whatever its share). (None, 1.0) when every token trains."""
        if not self.masks_tokens:
            return None, 1.0
        mine = torch.cat(entropies) if entropies else torch.zeros(0)
        everyone = torch.tensor(gather(mine.tolist()), dtype=torch.float32)
        threshold = top_share_threshold(everyone, self.cfg.top_entropy_quantile)
        kept = float((everyone >= threshold).float().mean()) if everyone.numel() else 0.0
        return [e >= threshold for e in entropies], kept

    def applied_coef(self) -> float:
        """The coefficient of this optimizer step's bonus (0 while an adaptive bonus waits for low entropy)."""
        if self.cfg.adaptive_entropy and self.last_entropy > self.cfg.entropy_target:
            return 0.0
        return self.coef

    def after_step(self, entropy: float) -> None:
        """Record the optimizer step's H̄ (global token mean) and move an adaptive coefficient."""
        if self.cfg.adaptive_entropy and math.isfinite(entropy):
            step = self.cfg.entropy_coef_delta if entropy <= self.cfg.entropy_target else -self.cfg.entropy_coef_delta
            self.coef = min(self.cfg.entropy_coef_max, max(self.cfg.entropy_coef_min, self.coef + step))
        if math.isfinite(entropy):
            self.last_entropy = entropy

    def state(self) -> dict:
        return {"coef": self.coef, "last_entropy": None if math.isinf(self.last_entropy) else self.last_entropy}

    def load(self, state: dict | None) -> None:
        if state:
            self.coef = float(state["coef"])
            self.last_entropy = math.inf if state.get("last_entropy") is None else float(state["last_entropy"])
