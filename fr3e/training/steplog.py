"""What one training step logs (`StepLog`, mixed into `fr3e.training.trainer.Trainer`): the metrics.jsonl row
(rewards, entropy, lengths, group composition, advantage distribution, α, values by state, clipping,
tokens, prefill served from the cache, time per phase) and the annotated samples of samples.jsonl.

Distributions are gathered from every process, so the figures see the whole batch; every process builds the
row (its reductions are collectives), the main process writes it.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from fr3e.method.branching import SHARED
from fr3e.method.sampling import group_outcomes
from fr3e.method.values import wilson_interval
from fr3e.training.rollouts import PromptWork

ADV_EDGES = np.linspace(-2.0, 2.0, 41)  # fixed histogram edges so steps and runs are comparable


class StepLog:
    """Needs the trainer's config, engine, scheduler, tokenizer and `Collectives`."""

    def _metrics_row(self, all_works, kept, rollouts, rounds, stats, timer, engine_before) -> dict:
        cfg = self.config
        state_rewards = [w.rewards[s.key] for w in all_works for s in w.states]
        outcomes = [o for r in state_rewards for o in group_outcomes(torch.tensor([r]))]  # groups may be ragged (adaptive)
        s0_outcomes = [o for o, (w, s) in zip(outcomes, [(w, s) for w in all_works for s in w.states])
                       if s.key.trajectory_id == SHARED]
        # Distributions are gathered from every process (small lists), so Figs. 3 and 5 see the whole batch.
        adv = np.array(self._gather([r.advantage for r in rollouts]), dtype=np.float64)
        alphas = self._gather([a for w in kept for k, a in w.alpha[cfg.modulation].items()
                               if any(r.key == k for r in w.rollouts)])
        by_j = defaultdict(list)
        for j, v in self._gather([(k.state_index, v) for w in all_works for k, v in w.values.items()]):
            by_j[j].append(v)
        ent_base_tokens = self._sum(timer.get("entropy_base_tokens", 0))
        entropy_base = (self._sum(timer.get("entropy_base_sum", 0.0)) / ent_base_tokens if ent_base_tokens
                        else stats.get("entropy", float("nan")))
        base_rewards = self._gather(timer.get("base_rewards", []))
        base_lengths = self._gather(timer.get("base_lengths", []))
        tok = stats.get("tokens", 0.0)
        gen_tokens = self.engine.counters.generated_tokens - engine_before[0]
        prefill = self.engine.counters.prompt_tokens - engine_before[1]
        # Prefill computed vs served from a prefix cache (the compute study): the engine counters are cumulative and the
        # evaluation between steps uses the same engine, so the step's share is the change since the previous
        # row, known only when no evaluation ran in between (its prompt tokens would show): else left unknown.
        c = self.engine.counters
        now = (c.prompt_tokens, c.cached_prefix_tokens, c.extra.get("prefill_computed_tokens"))
        mark = getattr(self, "_prefill_mark", (0, 0, 0) if engine_before[1] == 0 else None)
        self._prefill_mark = now
        known = mark is not None and now[0] - mark[0] == prefill
        computed = (now[2] - (mark[2] or 0) if now[2] is not None else prefill - (now[1] - mark[1])) if known else 0
        prefill_unknown = self._sum(0.0 if known else 1.0) > 0
        computed = None if prefill_unknown else int(self._sum(computed))
        full_lengths = [len(r.prefix_ids) - r.prompt_len + len(r.completion_ids) for r in rollouts]
        anchor_counts = [len(t["anchors"]) for w in all_works for t in w.base.get("trajectories", [])]
        n_base = int(self._sum(len(anchor_counts)))
        anchors_total = self._sum(sum(anchor_counts))
        no_anchor = self._sum(sum(1 for c in anchor_counts if c == 0))
        row = {
            "step": self.step_index,
            "reward_mean": self._gmean([r.reward for r in rollouts]),
            "reward_all_mean": self._gmean([x for v in state_rewards for x in v]),
            "base_reward_mean": float(np.mean(base_rewards)) if base_rewards else
            self._gmean([x for v in state_rewards for x in v]),
            "entropy": stats.get("entropy", float("nan")),
            "entropy_base": entropy_base,
            "response_length": self._gmean(full_lengths),
            "continuation_length": self._gmean([len(r.completion_ids) for r in rollouts]),
            "base_length": float(np.mean(base_lengths)) if base_lengths else None,
            **self._counts(outcomes, "groups"), **self._counts(s0_outcomes, "prompts"),
            "prompts_used": int(self._sum(len(all_works))), "prompts_kept": int(self._sum(len(kept))),
            "refill_rounds": rounds, "groups_trained": int(self._sum(len({r.key for r in rollouts}))),
            "rollouts_trained": int(self._sum(len(rollouts))),
            "adv_mean": float(adv.mean()) if adv.size else 0.0, "adv_std": float(adv.std()) if adv.size else 0.0,
            "adv_abs_mean": float(np.abs(adv).mean()) if adv.size else 0.0,
            **{f"adv_q{q:02d}": float(np.quantile(adv, q / 100)) if adv.size else 0.0 for q in (5, 25, 50, 75, 95)},
            "adv_hist": np.histogram(np.clip(adv, ADV_EDGES[0], ADV_EDGES[-1]), ADV_EDGES)[0].tolist(),
            "adv_hist_edges": ADV_EDGES.tolist(),
            "alpha_mean": float(np.mean(alphas)) if alphas else 1.0,
            "alpha_min": float(np.min(alphas)) if alphas else 1.0,
            "alpha_max": float(np.max(alphas)) if alphas else 1.0,
            "value_by_state": [float(np.mean(by_j[j])) for j in sorted(by_j)],
            # anchors per kept base trajectory (FR3E; None for GRPO++): a scorer that finds none does not branch
            "anchors_per_trajectory": anchors_total / n_base if n_base else None,
            "trajectories_without_anchor": no_anchor / n_base if n_base else None,
            "clip_low_frac": stats.get("clip_low", 0.0) / max(stats.get("tokens", 0.0), 1.0),
            "clip_high_frac": stats.get("clip_high", 0.0) / max(stats.get("tokens", 0.0), 1.0),
            "dual_clip_frac": stats.get("dual_clip", 0.0) / max(stats.get("tokens", 0.0), 1.0),
            "ratio_mean": stats.get("ratio_sum", 0.0) / max(stats.get("tokens", 0.0), 1.0),
            "approx_kl": stats.get("kl_sum", 0.0) / max(stats.get("tokens", 0.0), 1.0),
            "loss": stats.get("loss", 0.0), "grad_norm": stats.get("grad_norm", 0.0),
            "logprob_gap": stats.get("logprob_gap", 0.0),
            "gen_tokens": int(self._sum(gen_tokens)), "prefill_tokens": int(self._sum(prefill)),
            "prefill_computed_tokens": computed,
            "prefill_cached_tokens": None if computed is None else int(self._sum(prefill)) - computed,
            "trained_tokens": int(tok),  # the mini-batches partition the batch: each token trains once
            "lr": self.scheduler.get_last_lr()[0],
            **{k: timer[k] for k in ("time_generate", "time_score", "time_forward", "time_backward")},
        }
        row.update(self._adaptive_metrics(timer))  # only with fr3e.adaptive_budget on
        # only with an entropy bonus (the coefficient applied at the last optimizer step, the H̄ it measured) or
        # top-entropy tokens (the share of trained tokens that carried the loss)
        row.update({k: stats[k] for k in ("entropy_coef", "bonus_entropy", "entropy_kept_share") if k in stats})
        return row

    def _sample_rows(self, works: list[PromptWork], limit: int = 2) -> list[dict]:
        """A few fully annotated prompts (base trajectories, anchors, states, V, α) for samples.jsonl."""
        out = []
        for w in works[:limit]:
            trajs = [{"trajectory_id": t["trajectory_id"],
                      "tokens": [self.tokenizer.decode([i]) for i in t["response"]],
                      "entropy": t["entropy"], "scores": t["scores"], "anchors": t["anchors"],
                      "reward": t["reward"]} for t in w.base.get("trajectories", [])]
            states = []
            for s in w.states:
                r = w.rewards[s.key]
                lo, hi = wilson_interval(torch.tensor([sum(r)]), len(r))
                states.append({
                    "key": [s.key.prompt_id, s.key.trajectory_id, s.key.state_index], "anchor": s.anchor,
                    "prefix_text": self._decode(s.prefix_ids[s.prompt_len:]), "rewards": r,
                    "value": w.values[s.key], "value_ci": [lo.item(), hi.item()],
                    "alpha": {v: w.alpha[v][s.key] for v in ("paper", "official")},
                    "advantages": [x.advantage for x in w.rollouts if x.key == s.key]})
            out.append({"step": self.step_index, "prompt": w.prompt.text, "answer": w.prompt.answer,
                        "trajectories": trajs, "states": states})
        return out
