"""The training loop for FR3E and GRPO++ (paper §3; docs/architecture.md, "From a config to a run directory").

One step, top to bottom (`Trainer.step`):

    prompts ─engine→ base trajectories ─reward→ keep ≤ keep_right right + ≤ keep_wrong wrong
      ─trainer forward (no grad)→ entropy / surprisal ─select_anchors→ anchors ─build_states→ keyed states
      ─engine (M per state, fixed budget)→ continuations ─reward(prefix ⊕ continuation)→ r
      ─state_values→ V ─modulation→ α ─keyed_advantages→ A = α·Â
      ─dynamic sampling (drop zero-signal groups; refill up to a cap)→ batch
      ─policy_loss on continuation tokens (global token mean) → backward → optimizer step(s) → sync engine

With `fr3e.adaptive_budget` on (our extension, off by default), the M per state become rounds: a state whose first
continuations agree stops early and its share of the states × M budget goes to unsettled states (`fr3e.method.budget`).

GRPO++ is the same loop with the branching switched off: every prompt has the single state S_0,
G = `grpo.rollouts_per_prompt` rollouts of budget `data.max_response_tokens`, and α ≡ 1.

Batch target: `data.prompts_per_step` prompts *that keep at least one group carrying signal* after
dynamic sampling (DAPO counts prompts the same way). A refill round samples another `prompts_per_step`
prompts per process; at most `grpo.max_refill_rounds` refills per step, after which the step trains on
what it has. The number of trained groups and continuations is logged beside it.

Distributed (Accelerate): each process generates for its own prompts, so every group is complete on one
process; the token count that normalises the loss is summed over processes, and the processes run the
same number of backward passes per update (a process with fewer micro-batches runs zero-weight ones), so
DDP and FSDP gradient reductions line up. DDP averages gradients over processes; the loss is multiplied by
the world size to turn that average back into the global token mean.

What is not the step lives beside it: the records passed between stages (`fr3e.training.rollouts`), loading
the policy and its chunked log-prob pass (`fr3e.training.policy`), reductions over processes
(`fr3e.training.collectives`), checkpoints, interruption and the final model (`fr3e.training.resume`), and
the metrics row and samples of each step (`fr3e.training.steplog`), and the entropy probe
(`fr3e.training.probe`); `Trainer` mixes the last four in.

Deviations from the authors' code are listed in the modules that implement each piece; here: several
optimizer steps per rollout batch (`optim.updates_per_batch`, so Clip-Higher can act; 1 in the tiny recipes,
which run on-policy), rewards of every
state computed before filtering, generation seeds derived from (seed, step, round, process) so that a
resumed run reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fr3e.data.paper import encode_prompt
from fr3e.method.branching import State
from fr3e.method.losses import policy_loss
from fr3e.method.sampling import (
    global_quota,
    minibatches_by_group,
    select_base_trajectories,
    signal_groups,
)
from fr3e.training.checkpoint import RunLock, RunLocked
from fr3e.training.collectives import Collectives
from fr3e.training.config import ConfigError, TrainConfig
from fr3e.training.distributed import make_accelerator
from fr3e.training.entropy_control import EntropyControl
from fr3e.training.errors import TrainingError, TrainingInterrupted
from fr3e.training.exploration import Trajectory, continuation_rollouts, plan_states, score_exploration
from fr3e.training.policy import (
    build_engine,
    load_policy,
    load_train_prompts,
    micro_batches,
    pad_right,
    precision,
    release_cached_memory,
    step_delimiter_ids,
    token_logprobs,
)
from fr3e.training.probe import Probe
from fr3e.training.resume import Resumable
from fr3e.training.rollouts import PromptItem, PromptStream, PromptWork, Rollout
from fr3e.training.runlog import RunDir
from fr3e.training.steplog import StepLog
from fr3e.training.tracking import RunTracker, log_with
from fr3e.utils.io import append_jsonl, read_json
from fr3e.utils.seeds import derive_seed

logger = logging.getLogger(__name__)

TIMING_KEYS = ("time_generate", "time_score", "time_forward", "time_backward", "time_other", "time_step",
               "time_eval", "wall")


# ------------------------------------------------------------------------------------------ trainer
class Trainer(Collectives, Resumable, StepLog, Probe):
    """Builds everything once, then `run()` calls `step()` until `config.steps`."""

    def __init__(self, config: TrainConfig, run_dir: str | Path, progress: bool = True,
                 cache_dir: str | Path = "runs/cache"):
        self.config = config
        self.progress = progress
        self.accelerator = make_accelerator(config.distributed_timeout_s,  # timeouts; FSDP in CPU rehearsals
                                            log_with(config.report_to), Path(run_dir) / "tensorboard")
        self.tracker = RunTracker(self.accelerator, config, run_dir)  # dashboards (config.report_to)
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self.run = RunDir(run_dir)
        self.lock = RunLock(run_dir)  # one training process (group) per run directory
        refused = ""
        if self.accelerator.is_main_process:
            try:
                self.lock.acquire()
            except RunLocked as exc:
                refused = str(exc)
        if self._sum(1.0 if refused else 0.0):  # every process stops together
            raise ConfigError(refused or f"run directory {run_dir} is in use by another process (see process 0).")
        torch.manual_seed(config.seed)
        model, self.tokenizer, self.model_source = load_policy(config, cache_dir, progress)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr,
                                      weight_decay=config.optim.weight_decay)
        warm = config.optim.warmup_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.engine = self._build_engine()
        self.train_set = load_train_prompts(config)
        # The run directory is written only once the model and data loaded: a failed start leaves nothing.
        if self.accelerator.is_main_process:
            self.run.prepare(config, self.world)
        self.accelerator.wait_for_everyone()
        self.stream = PromptStream(len(self.train_set), config.seed)
        self.step_index = 0
        self._stop_signal = None  # name of a SIGTERM/SIGINT received (stop at the next step boundary)
        self._round = 0  # generation round within the step (refills); part of every sampling seed
        self._coin = None  # (step, RNG) of the coin reward (config.reward == "coin")
        self.wall = 0.0
        self.delimiter_ids = step_delimiter_ids(config, self.tokenizer) if config.fr3e.scorer == "newline" else None
        self.entropy_control = EntropyControl(config.optim)  # entropy bonus / top-entropy tokens (off by default)
        self.compute_dtype = precision(config)[1]  # half-precision forwards over fp32 master weights, or None

    # -------------------------------------------------------------------------------- components
    def _build_engine(self):
        return build_engine(self.config, self.accelerator.unwrap_model(self.model), self.tokenizer,
                            self.model_source, self.world)

    def _engine_call(self, name: str) -> None:
        """Optional engine hooks: vLLM's sleep mode; the HF engine's `sleep` frees its copy of a sharded model."""
        hook = getattr(self.engine, name, None)
        if hook is not None:
            hook()

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _reward(self, text: str, answer: str) -> float:
        from fr3e.tasks.worlds import reward

        if self.rank == self.config.rehearsal_zero_reward_rank:  # rehearsal of uneven processes only
            return 0.0
        if self.config.reward == "coin":  # control: a fair coin, seeded by (seed, step, process), in call order
            if self._coin is None or self._coin[0] != self.step_index:
                self._coin = (self.step_index, random.Random(self._seed("coin")))
            return float(self._coin[1].random() < 0.5)
        return reward(text, answer)

    def _seed(self, *parts) -> int:
        return derive_seed(self.config.seed, self.step_index, self.rank, *parts)

    def _sample(self, prompt_ids: list[list[int]], n: int, max_new: int, tag: str):
        cfg = self.config.rollout
        return self.engine.generate(prompt_ids, n=n, max_new_tokens=max_new, temperature=cfg.temperature,
                                    top_p=cfg.top_p, seed=self._seed(tag, self._round))

    # ----------------------------------------------------------------------------- one round
    def _take_prompts(self, count: int, round_index: int) -> list[PromptItem]:
        """This process's share of `count` prompts for one generation round."""
        idx = self.stream.take(count * self.world)[self.rank:: self.world]
        items = []
        for j, i in enumerate(idx):
            row = self.train_set[i]
            ids = encode_prompt(self.tokenizer, row["prompt"])
            if len(ids) > self.config.data.max_prompt_tokens:
                continue
            pid = (round_index * count + j) * self.world + self.rank  # unique across rounds and processes
            items.append(PromptItem(pid, ids, str(row["answer"]), row["prompt"]))
        return items

    def _forward_rows(self, rows: list[list[int]], want_entropy: bool = False) -> list[tuple]:
        """Per-row (logp (L-1,), entropy (L-1,) or None) of the current policy, no grad, micro-batched.

        Every process runs the same number of forwards, the largest count over processes (a forward under
        FSDP is a collective; under DDP the first one broadcasts buffers); a process with fewer rows runs
        forwards of a 2-token dummy row and discards them.
        """
        optim = self.config.optim
        chunks = [[rows[i] for i in c] for c in micro_batches([len(r) for r in rows], optim.micro_batch_size,
                                                                optim.micro_batch_tokens)]
        n_forward = self._max(len(chunks))
        out = []
        with torch.no_grad():
            for k in range(n_forward):
                chunk = chunks[k] if k < len(chunks) else None
                ids, mask = pad_right(chunk or [[self.tokenizer.eos_token_id] * 2], self.tokenizer.pad_token_id,
                                      self.accelerator.device)
                with self._autocast():
                    logp, ent = token_logprobs(self.model, ids, mask, want_entropy=want_entropy)
                if chunk is None:
                    continue
                logp = logp.float().cpu()
                ent = ent.cpu() if ent is not None else None
                for b, row in enumerate(chunk):
                    n = len(row) - 1
                    out.append((logp[b, :n], ent[b, :n] if ent is not None else None))
        return out

    def _first_return(self, prompts: list[PromptItem], timer: dict) -> list[tuple[PromptItem, list[State], dict]]:
        """Base trajectories → kept ones → uncertainty → anchors → states (FR3E only)."""
        cfg = self.config.fr3e
        t0 = time.perf_counter()
        base = self._sample([p.ids for p in prompts], cfg.base_per_prompt, self.config.data.max_response_tokens, "base")
        timer["time_generate"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        kept: list[tuple[PromptItem, int, list[int], float]] = []  # (prompt, traj_id, response, reward)
        base_rewards = []
        for p, comps in zip(prompts, base):
            rewards = [self._reward(self._decode(c.token_ids), p.answer) for c in comps]
            base_rewards.extend(rewards)
            for i in select_base_trajectories(rewards, cfg.keep_right, cfg.keep_wrong):
                kept.append((p, p.prompt_id * cfg.base_per_prompt + i, comps[i].token_ids, rewards[i]))
        timer["time_score"] += time.perf_counter() - t0
        timer["base_rewards"] = timer.get("base_rewards", []) + base_rewards  # every refill round
        timer["base_lengths"] = timer.get("base_lengths", []) + [len(c.token_ids) for comps in base for c in comps]
        # Uncertainty from the trainer's own forward pass over prompt ⊕ response, micro-batched; every process
        # runs the same number of forwards (FSDP: each is a collective), even one that kept no trajectory.
        t0 = time.perf_counter()
        outs = self._forward_rows([p.ids + resp for p, _, resp, _ in kept], want_entropy=True)
        trajectories = []
        for (p, tid, resp, reward), (logp, ent) in zip(kept, outs):
            s, n = len(p.ids) - 1, len(resp)  # target index of response token 0
            trajectories.append(Trajectory(p, tid, resp, reward, ent[s: s + n].float(), logp[s: s + n].float()))
        timer["time_forward"] += time.perf_counter() - t0
        if trajectories:
            # Summed over the (B, T) zero-padded block, in the order the logged metric has always used.
            timer["entropy_base_sum"] = torch.nn.utils.rnn.pad_sequence(
                [t.entropy for t in trajectories], batch_first=True).sum().item()
            timer["entropy_base_tokens"] = sum(len(t.response_ids) for t in trajectories)
        return plan_states(prompts, trajectories, num_anchors=cfg.num_anchors, min_anchor_gap=cfg.min_anchor_gap,
                           scorer=cfg.scorer, eos_token_ids=self.engine.eos_token_ids,
                           delimiter_ids=self.delimiter_ids or (),
                           generator=torch.Generator().manual_seed(self._seed("random-scorer", self._round)))

    def _explore(self, prompts: list[PromptItem], timer: dict) -> list[PromptWork]:
        """States → M continuations each (or an adaptive number, `fr3e.adaptive_budget`) → rewards → V, α, A
        (before any filtering), through `fr3e.training.exploration`."""
        cfg = self.config
        if cfg.method == "fr3e":
            planned = self._first_return(prompts, timer)
            m, budget = cfg.fr3e.continuations_per_state, cfg.continuation_budget
        else:
            planned = plan_states(prompts, [], num_anchors=1)
            m, budget = cfg.grpo.rollouts_per_prompt, cfg.data.max_response_tokens
        if cfg.method == "fr3e" and cfg.fr3e.adaptive_budget:
            states = [s for _, sts, _ in planned for s in sts]
            answers = {p.prompt_id: p for p, _, _ in planned}
            by_key = self._explore_adaptive(states, answers, budget, timer)
        else:
            # One engine call, even with no state: an engine call may be a collective (vLLM tensor parallelism).
            prompts_of = {p.prompt_id: p for p, _, _ in planned}
            states = [(prompts_of[s.key.prompt_id], s) for _, sts, _ in planned for s in sts]
            t0 = time.perf_counter()
            conts = self._sample([s.prefix_ids for _, s in states], m, budget, "explore")
            timer["time_generate"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            by_key = {s.key: continuation_rollouts(s, comps, p, self._reward_ids, cfg.fr3e.score_prefix)
                      for (p, s), comps in zip(states, conts)}
            timer["time_score"] += time.perf_counter() - t0
        return score_exploration(planned, by_key, modulation=cfg.modulation,
                                 advantage_scale=cfg.grpo.advantage_scale)

    def _reward_ids(self, prompt: PromptItem, response_ids: list[int]) -> float:
        return self._reward(self._decode(response_ids), prompt.answer)

    def _explore_adaptive(self, states: list[State], answers: dict, max_new: int, timer: dict) -> dict:
        """Continuations in rounds under the adaptive budget (`fr3e.method.budget.next_round`).

        The pool is this call's states × M; each round asks the rule how many more each state gets, samples
        them (one engine call per distinct count, seeded by (step, process, generation round, adaptive round,
        count)), scores them and repeats until the rule gives nothing. Every process runs the same rounds and
        calls (an engine call may be a collective), sampling nothing for counts it does not need.
        returns state key -> rollouts in sampling order (between R and CAP_FACTOR·M of them).
        """
        from fr3e.method import budget as budget_mod

        fc, sampling = self.config.fr3e, self.config.rollout
        m = fc.continuations_per_state
        total, cap = len(states) * m, budget_mod.CAP_FACTOR * m
        rolls: list[list[Rollout]] = [[] for _ in states]
        adaptive_round = 0
        while True:
            give = budget_mod.next_round([[r.reward for r in ro] for ro in rolls], total, fc.adaptive_round, cap,
                                         fc.adaptive_width)
            if self._max(int(any(give))) == 0:
                break
            for count in sorted(set(self._gather(sorted({g for g in give if g > 0})))):
                idx = [j for j, g in enumerate(give) if g == count]
                t0 = time.perf_counter()
                conts = self.engine.generate([states[j].prefix_ids for j in idx], n=count, max_new_tokens=max_new,
                                             temperature=sampling.temperature, top_p=sampling.top_p,
                                             seed=self._seed("explore", self._round, "adaptive", adaptive_round, count))
                timer["time_generate"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                for j, comps in zip(idx, conts):
                    rolls[j].extend(continuation_rollouts(states[j], comps, answers[states[j].key.prompt_id],
                                                          self._reward_ids, self.config.fr3e.score_prefix))
                timer["time_score"] += time.perf_counter() - t0
            adaptive_round += 1
        counts = [len(ro) for ro in rolls]
        settled = budget_mod.settled_states([[r.reward for r in ro] for ro in rolls], fc.adaptive_round,
                                            fc.adaptive_width)
        timer["adaptive_continuations"] += sum(counts)
        timer["adaptive_budget"] += total
        timer["adaptive_settled_early"] += sum(1 for d, c in zip(settled, counts) if d and c < m)
        timer["adaptive_rounds"] = max(timer["adaptive_rounds"], adaptive_round)
        return {s.key: ro for s, ro in zip(states, rolls)}

    def _adaptive_metrics(self, timer: dict) -> dict:
        """The adaptive budget's cost in the step (all generation rounds, all processes); {} when it is off."""
        if not (self.config.method == "fr3e" and self.config.fr3e.adaptive_budget):
            return {}
        made, pool = int(self._sum(timer["adaptive_continuations"])), int(self._sum(timer["adaptive_budget"]))
        return {"continuations_generated": made, "continuations_budget": pool,
                "states_settled_early": int(self._sum(timer["adaptive_settled_early"])),
                "continuations_saved_frac": 1.0 - made / pool if pool else 0.0,
                "adaptive_rounds": int(self._max(int(timer["adaptive_rounds"])))}

    def _collect(self, timer: dict) -> tuple[list[PromptWork], list[PromptWork], int]:
        """Generation rounds until the batch target of signal-carrying prompts is met or the cap hit.

        The target holds for the whole batch, over processes: after the last round, the signal-carrying prompts
        are ordered by (round, process, sampling order) and the first `prompts_per_step` of that order train
        (`sampling.global_quota`), however unevenly they fell on the processes.
        """
        cfg = self.config
        target = cfg.data.prompts_per_step
        per_rank = max(1, math.ceil(target / self.world))
        all_works: list[PromptWork] = []
        kept_by_round: list[list[PromptWork]] = []
        counts: list[list[int]] = []  # (rounds, world) signal-carrying prompts per process
        rounds = 0
        while True:
            self._round = rounds
            works = self._explore(self._take_prompts(per_rank, rounds), timer)
            all_works.extend(works)
            kept_round = []
            for w in works:
                if cfg.grpo.dynamic_sampling:
                    signal = torch.cat([signal_groups(torch.tensor([w.rewards[s.key]])) for s in w.states])  # adaptive: ragged
                    live = {s.key for s, ok in zip(w.states, signal.tolist()) if ok}
                    w.rollouts = [r for r in w.rollouts if r.key in live]
                if w.rollouts:
                    kept_round.append(w)
            kept_by_round.append(kept_round)
            counts.append([int(c) for c in self._gather([len(kept_round)])])
            have = sum(map(sum, counts))
            if not cfg.grpo.dynamic_sampling or have >= target or rounds >= cfg.grpo.max_refill_rounds:
                break
            rounds += 1
        self._round = 0
        quota = global_quota(counts, target)  # (rounds, world)
        kept = [w for r, ws in enumerate(kept_by_round) for w in ws[: quota[r][self.rank]]]
        return all_works, kept, rounds


    # ------------------------------------------------------------------------------- update
    def _update(self, rollouts: list[Rollout], timer: dict) -> dict:
        """Old log-probs (no grad) once, then `updates_per_batch` optimizer steps over mini-batches."""
        cfg = self.config.optim
        rows = [r.prefix_ids + r.completion_ids for r in rollouts]
        starts = [len(r.prefix_ids) - 1 for r in rollouts]  # target index of the first continuation token
        lens = [len(r.completion_ids) for r in rollouts]
        adv = torch.tensor([r.advantage for r in rollouts], dtype=torch.float32)
        mb = cfg.micro_batch_size
        # Old log-probs and entropy, micro-batched (the same number of forwards on every process).
        t0 = time.perf_counter()
        outs = self._forward_rows(rows, want_entropy=True)
        old, ents, ent_sum, tok_sum, gap_sum = [], [], 0.0, 0, 0.0
        for r, s, n, (logp, ent) in zip(rollouts, starts, lens, outs):
            old.append(logp[s: s + n])  # (n,) old log-probs of the continuation tokens
            ents.append(ent[s: s + n])
            ent_sum += ent[s: s + n].sum().item()
            tok_sum += n
            gap_sum += (logp[s: s + n] - torch.tensor(r.engine_logprobs, dtype=torch.float32)).abs().sum().item()
        timer["time_forward"] += time.perf_counter() - t0
        stats = defaultdict(float)
        # Summed over processes (metrics describe the whole batch, not process 0's share).
        ent_sum, tok_sum, gap_sum = self._sum(ent_sum), self._sum(tok_sum), self._sum(gap_sum)
        stats["entropy"] = ent_sum / tok_sum if tok_sum else float("nan")
        stats["logprob_gap"] = gap_sum / max(tok_sum, 1)
        control = self.entropy_control
        keep, kept_share = control.keep_masks(ents, self._gather)  # None: every token trains
        if keep is not None:
            stats["entropy_kept_share"] = kept_share
        # Mini-batches: whole groups (a group's advantages sum to zero, so the tokens its rollouts share get
        # no net push; split across optimizer steps they would get a random one), seeded order.
        t0 = time.perf_counter()
        parts = minibatches_by_group([r.key for r in rollouts], cfg.updates_per_batch, self._seed("minibatch"))
        n_updates = self._max(len(parts))
        for u in range(n_updates):
            part = parts[u] if u < len(parts) else []
            tokens_global = self._sum(sum(lens[i] for i in part))
            seqs_global = self._sum(len(part))
            bonus = None  # (coefficient, global count of the tokens the bonus averages over)
            if control.bonus:
                bonus = (control.applied_coef(), self._sum(sum(int(keep[i].sum()) if keep else lens[i] for i in part)))
                before = stats["bonus_entropy_sum"]
            micro = [[part[j] for j in c] for c in micro_batches([len(rows[i]) for i in part], mb,
                                                                     cfg.micro_batch_tokens)]
            n_micro = self._max(len(micro))
            self.optimizer.zero_grad(set_to_none=True)
            for k in range(n_micro):
                chunk = micro[k] if k < len(micro) else []
                sync = contextlib.nullcontext() if k == n_micro - 1 else self.accelerator.no_sync(self.model)
                with sync:
                    loss, st = self._micro_loss(chunk, rows, starts, lens, adv, old, mb, tokens_global, seqs_global,
                                                keep, bonus)
                    self.accelerator.backward(loss * self.world)
                for name, v in st.items():
                    stats[name] += float(v)
                stats["loss"] += float(loss.detach())
            # Every process stops together: a process raising alone would leave the others in a collective.
            bad = self._sum(0.0 if math.isfinite(stats["loss"]) else 1.0)
            if bad:
                where = f"{stats['loss']} on this process" if not math.isfinite(stats["loss"]) else \
                    f"non-finite on {int(bad)} of {self.world} processes"
                raise TrainingError(
                    f"step {self.step_index + 1}: the policy loss is {where}. Likely cause: "
                    f"a learning rate too high for this model (optim.lr={cfg.lr}) or log-probs of -inf from a "
                    "sampler/trainer mismatch; lower optim.lr or check rollout.temperature/top_p.")
            if cfg.grad_clip > 0:
                gn = self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                stats["grad_norm"] += float(gn) / n_updates
            self.optimizer.step()
            if bonus is not None:
                stats["entropy_coef"], stats["bonus_entropy"] = bonus[0], \
                    self._sum(stats["bonus_entropy_sum"] - before) / max(bonus[1], 1)
                control.after_step(stats["bonus_entropy"])
        stats.pop("bonus_entropy_sum", None)
        self.optimizer.zero_grad(set_to_none=True)  # no gradients held through the next generation
        self.scheduler.step()
        timer["time_backward"] += time.perf_counter() - t0
        stats["loss"] /= max(n_updates, 1)
        for name in ("loss", "tokens", "clip_low", "clip_high", "dual_clip", "ratio_sum", "kl_sum"):
            stats[name] = self._sum(stats.get(name, 0.0))  # each process holds its share of the global sums
        return stats

    def _autocast(self):
        """Forwards in the half dtype over fp32 master weights (`precision`), else a no-op."""
        if self.compute_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.accelerator.device.type, dtype=self.compute_dtype)

    @staticmethod
    def _target_mask(shape, starts, lens) -> torch.Tensor:
        m = torch.zeros(shape, dtype=torch.bool)  # (B, L-1)
        for b, (s, n) in enumerate(zip(starts, lens)):
            m[b, s: s + n] = True
        return m

    def _micro_loss(self, chunk, rows, starts, lens, adv, old, mb, tokens_global, seqs_global, keep=None,
                    bonus=None):
        """One micro-batch's loss and stats. keep: per-rollout masks of the tokens that train (top entropy only);
        bonus: (coefficient, global token count) of an entropy bonus, None without one (`EntropyControl`)."""
        cfg = self.config.optim
        if not chunk:  # zero-weight pass so every process runs the same number of backward calls
            dummy = rows[:1] or [[self.tokenizer.eos_token_id] * 2]
            ids, mask = pad_right(dummy, self.tokenizer.pad_token_id, self.accelerator.device)
            with self._autocast():
                logp, _ = token_logprobs(self.model, ids, mask)
            return logp.sum() * 0.0, {}
        ids, mask = pad_right([rows[i] for i in chunk], self.tokenizer.pad_token_id, self.accelerator.device)
        with self._autocast():
            logp, ent = token_logprobs(self.model, ids, mask, entropy_grad=bonus is not None,
                                       first=min(starts[i] for i in chunk))  # nothing before trains
        tmask = self._target_mask(logp.shape, [starts[i] for i in chunk], [lens[i] for i in chunk])
        old_logp = torch.zeros(logp.shape)  # (b, L-1)
        for b, i in enumerate(chunk):
            old_logp[b][tmask[b]] = old[i]
        if keep is not None:  # the loss's token-mean still divides by every trained token (tokens_global)
            for b, i in enumerate(chunk):
                tmask[b, starts[i]: starts[i] + lens[i]] = keep[i]
        dev = logp.device
        loss, st = policy_loss(logp, old_logp.to(dev), adv[chunk].to(dev), tmask.to(dev), cfg.eps_low, cfg.eps_high, cfg.dual_clip,
                               cfg.loss_aggregation, num_tokens=max(tokens_global, 1), num_seqs=max(seqs_global, 1))
        if bonus is not None:
            ent_sum = (ent * tmask.to(dev)).sum()
            loss = loss - bonus[0] * ent_sum / max(bonus[1], 1)
            st["bonus_entropy_sum"] = ent_sum.detach()
        return loss, st

    # --------------------------------------------------------------------------------- step
    def step(self) -> dict:
        t_start = time.perf_counter()
        timer = defaultdict(float)
        engine_before = (self.engine.counters.generated_tokens, self.engine.counters.prompt_tokens)
        self._engine_call("wake_up")
        all_works, kept, rounds = self._collect(timer)
        self._engine_call("sleep")  # colocated vLLM frees its memory while the trainer runs backward
        self._last_works = all_works
        rollouts = [r for w in kept for r in w.rollouts]
        rewards_all = [x for w in all_works for v in w.rewards.values() for x in v]
        if self._sum(1.0 if any(not math.isfinite(x) for x in rewards_all) else 0.0):  # every process stops
            raise TrainingError(f"step {self.step_index + 1}: a reward is NaN/inf; the reward function must return "
                                "finite 0/1 values (see fr3e.method.rewards.reward).")
        # Every process enters the update (collectives inside), even one whose groups were all filtered.
        stats = self._update(rollouts, timer) if rollouts or self.world > 1 else {"entropy": float("nan"), "loss": 0.0}
        if not rollouts:
            logger.warning("step %d: no group carried signal after %d refills; no update", self.step_index + 1, rounds)
        # After the update: gradients are freed (`_update`), PyTorch's cache goes back to the device, then the engine
        # takes the new weights (vLLM wakes its weights only); its KV cache wakes at the next generation.
        release_cached_memory()
        self.engine.sync_weights(self.accelerator.unwrap_model(self.model))
        self.step_index += 1
        row = self._metrics_row(all_works, kept, rollouts, rounds, stats, timer, engine_before)
        row["time_step"] = time.perf_counter() - t_start
        row["time_other"] = row["time_step"] - sum(timer[k] for k in ("time_generate", "time_score", "time_forward",
                                                                      "time_backward"))
        self._check_anchors(row)
        return row

    def _check_anchors(self, row: dict) -> None:
        """Stop when the scorer found no anchor on most base trajectories: FR3E would silently be GRPO on base
        trajectories. The row's numbers are sums over processes, so every process decides alike."""
        share = row.get("trajectories_without_anchor")
        if share is None or share <= 0.5:
            return
        cfg = self.config.fr3e
        fix = (f"set fr3e.step_delimiter to the string that separates the task's steps (now "
               f"{cfg.step_delimiter or 'the task default'!r})" if cfg.scorer == "newline" else
               "check that responses are longer than one token (data.max_response_tokens)")
        raise TrainingError(f"step {self.step_index}: the {cfg.scorer!r} scorer found no anchor on {share:.0%} of the "
                            f"base trajectories, so FR3E did not branch from them; {fix}.")


    # ---------------------------------------------------------------------------------- eval
    def evaluate(self) -> list[dict]:
        """Evaluate the current policy on the configured benchmarks, sharded over the processes.

        Every process samples its share of the problems with its own engine and the per-problem results are
        gathered, so an evaluation takes 1/world of the time and no process waits in a collective while
        another evaluates alone. Every process returns the same rows; the main process writes them.
        """
        from fr3e.evaluation.evaluate import eval_rows, evaluate

        cfg = self.config.data
        policy = self.accelerator.unwrap_model(self.model)
        report = evaluate(policy, benchmarks=list(cfg.eval_benchmarks), local_files=cfg.local_files, n=cfg.eval_n,
                          temperature=cfg.eval_temperature, top_p=cfg.eval_top_p,
                          max_new_tokens=cfg.max_response_tokens, num_problems=cfg.eval_problems or None,
                          seed=derive_seed(self.config.seed, "eval"), engine=self.engine, tokenizer=self.tokenizer,
                          progress=False, rank=self.rank, world=self.world, gather=self._gather,
                          tiny_world=cfg.world)
        return eval_rows(report, self.step_index)

    # ----------------------------------------------------------------------------------- run
    def run_loop(self) -> Path:
        if self.run.is_finished():
            logger.info("run %s already finished; reusing it", self.run.path)
            return self.run.path
        self.load_checkpoint()
        previous = self._install_stop_handlers()
        self.tracker.start()
        try:
            return self._loop()
        finally:
            self.tracker.end()
            import signal

            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _loop(self) -> Path:
        cfg = self.config
        main = self.accelerator.is_main_process
        bar = tqdm(total=cfg.steps, initial=self.step_index, desc=f"{cfg.name}", disable=not (self.progress and main),
                   dynamic_ncols=True)
        if cfg.probe_every and self.step_index == 0:
            self._write_probe(self.probe())  # the policy before any update: every later probe is read against it
        while self.step_index < cfg.steps:
            t0 = time.perf_counter()
            row = self.step()
            if cfg.probe_every and (self.step_index % cfg.probe_every == 0 or self.step_index == cfg.steps):
                self._write_probe(self.probe())  # every process: sharded
            evals = []
            if cfg.eval_every and self.step_index % cfg.eval_every == 0 and self.step_index < cfg.steps:
                te = time.perf_counter()
                evals = self.evaluate()  # every process: sharded
                row["time_eval"] = time.perf_counter() - te
            if main:
                if cfg.sample_every and (self.step_index % cfg.sample_every == 0 or self.step_index == 1):
                    for s in self._sample_rows(self._last_works):
                        append_jsonl(self.run.samples_file, s)
                self.wall += time.perf_counter() - t0
                row["wall"] = self.wall
                append_jsonl(self.run.metrics_file, row)
                for e in evals:
                    append_jsonl(self.run.eval_file, e)
                self.tracker.log_metrics(row)
                self.tracker.log_evals(evals, self.step_index)
                bar.set_postfix(reward=_fmt(row["reward_all_mean"]), entropy=_fmt(row["entropy"]))  # "-": no update
                bar.update(1)
            saved = self.step_index % cfg.checkpoint_every == 0 or self.step_index == cfg.steps
            if saved:
                self.save_checkpoint()
            if self.step_index < cfg.steps and self._stop_requested():
                if not saved:
                    self.save_checkpoint()
                bar.close()
                raise TrainingInterrupted(
                    f"stopped by {self._stop_signal or 'a signal to another process'} after step {self.step_index} "
                    f"of {cfg.steps}; checkpoint saved in {self.run.checkpoints}. Run the same command to resume.")
        bar.close()
        evals = self.evaluate()  # every process: sharded
        self.save_model(evals)
        if main:
            for e in evals:
                append_jsonl(self.run.eval_file, e)
            self.tracker.log_evals(evals, self.step_index)
            self.run.mark_done({"steps": self.step_index, "wall": self.wall})
        self.accelerator.wait_for_everyone()
        return self.run.path


def _fmt(value: float) -> str:
    """A progress-bar number; "-" for a step without one (no update: no entropy)."""
    return "-" if value is None or not math.isfinite(value) else f"{value:.3f}"


def train(config: TrainConfig, run_dir: str | Path | None = None, progress: bool = True,
          cache_dir: str | Path = "runs/cache") -> Path:
    """Train `config` in `run_dir` (default runs/<name>); reuse a finished run, resume an interrupted one."""
    run_dir = Path(run_dir or Path("runs") / config.name)
    if RunDir(run_dir).is_finished():
        _check_same(run_dir, config)
        logger.info("run %s already finished; reusing it", run_dir)
        return run_dir
    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    trainer = Trainer(config, run_dir, progress=progress, cache_dir=cache_dir)
    try:
        return trainer.run_loop()
    finally:
        trainer.lock.release()


def _check_same(run_dir: Path, config: TrainConfig) -> None:

    from fr3e.training.config import ConfigError, diff_configs, stale_newline_run

    saved = read_json(run_dir / "config.json")
    if stale_newline_run(saved):
        raise ConfigError(f"run directory {run_dir} is a 'newline'-scorer run from before fr3e.step_delimiter: it "
                          "split steps at a blank line, which the tiny world never writes, so it never branched. "
                          "Delete the directory and train it again.")
    diff = diff_configs(saved, config.to_dict())
    if diff:
        raise ConfigError(f"run directory {run_dir} holds a different config: " + "; ".join(diff)
                          + ". Use another --run-dir, or delete the directory to start over.")
