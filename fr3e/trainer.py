"""The training loop for FR3E and GRPO++ (paper §3; DESIGN.md "One training step").

One step, top to bottom (`Trainer.step`):

    prompts ─engine→ base trajectories ─reward→ keep ≤ keep_right right + ≤ keep_wrong wrong
      ─trainer forward (no grad)→ entropy / surprisal ─select_anchors→ anchors ─build_states→ keyed states
      ─engine (M per state, fixed budget)→ continuations ─reward(prefix ⊕ continuation)→ r
      ─state_values→ V ─modulation→ α ─keyed_advantages→ A = α·Â
      ─dynamic sampling (drop zero-signal groups; refill up to a cap)→ batch
      ─policy_loss on continuation tokens (global token mean) → backward → optimizer step(s) → sync engine

With `fr3e.adaptive_budget` on (issue 12 §3, off by default), the M per state become rounds: a state whose first
continuations agree stops early and its share of the states × M budget goes to unsettled states (`fr3e.budget`).

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

Deviations from the authors' code are listed in the modules that implement each piece; here: several
optimizer steps per rollout batch (`optim.updates_per_batch`, so Clip-Higher can act), rewards of every
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from fr3e import anchors as anchors_mod
from fr3e import entropy as entropy_mod
from fr3e.advantages import keyed_advantages
from fr3e.branching import SHARED, State, StateKey, build_states, value_chains
from fr3e.checkpoint import RunLock, RunLocked, usable_checkpoints, write_manifest
from fr3e.config import ConfigError, TrainConfig
from fr3e.data import encode_prompt
from fr3e.distributed import make_accelerator
from fr3e.io import append_jsonl, atomic_write_json
from fr3e.losses import policy_loss
from fr3e.modelcard import write_model_card
from fr3e.modulation import modulation_by_key
from fr3e.runlog import RunDir
from fr3e.sampling import (
    ALL_RIGHT,
    ALL_WRONG,
    global_quota,
    group_outcomes,
    minibatches_by_group,
    select_base_trajectories,
    signal_groups,
)
from fr3e.seeds import derive_seed
from fr3e.tracking import RunTracker, log_with
from fr3e.values import state_values, wilson_interval

logger = logging.getLogger(__name__)

ADV_EDGES = np.linspace(-2.0, 2.0, 41)  # fixed histogram edges so steps and runs are comparable
TIMING_KEYS = ("time_generate", "time_score", "time_forward", "time_backward", "time_other", "time_step",
               "time_eval", "wall")


class TrainingError(RuntimeError):
    """The run cannot continue (non-finite loss or reward, ...); the message names the step and cause."""


class TrainingInterrupted(TrainingError):
    """SIGTERM / Ctrl-C: the run stopped cleanly at a step boundary with a checkpoint; rerun to resume."""


# --------------------------------------------------------------------------------------------- data
@dataclass
class PromptItem:
    """One training prompt in a step: a step-unique id, its token ids and gold answer."""

    prompt_id: int
    ids: list[int]
    answer: str
    text: str


@dataclass
class Rollout:
    """One continuation that may train: the state it came from, its tokens, reward and advantage."""

    key: StateKey
    prefix_ids: list[int]
    prompt_len: int
    completion_ids: list[int]
    engine_logprobs: list[float]
    reward: float
    advantage: float = 0.0


@dataclass
class PromptWork:
    """Everything one prompt produced in one step (before and after dynamic sampling)."""

    prompt: PromptItem
    states: list[State]
    rewards: dict[StateKey, list[float]]
    rollouts: list[Rollout]
    base: dict = field(default_factory=dict)  # base trajectories and anchors (FR3E), for logs and samples
    values: dict[StateKey, float] = field(default_factory=dict)
    alpha: dict[str, dict[StateKey, float]] = field(default_factory=dict)


class PromptStream:
    """An endless, seeded, epoch-shuffled stream of training-set indices; its position is checkpointed."""

    def __init__(self, size: int, seed: int, position: int = 0):
        if size < 1:
            raise ValueError("the training set is empty")
        self.size, self.seed, self.position = size, seed, position

    def take(self, count: int) -> list[int]:
        out = []
        for _ in range(count):
            epoch, offset = divmod(self.position, self.size)
            order = np.random.default_rng(derive_seed(self.seed, "epoch", epoch)).permutation(self.size)
            out.append(int(order[offset]))
            self.position += 1
        return out


# ------------------------------------------------------------------------------------ model pieces
def load_policy(config: TrainConfig, cache_dir: str | Path = "runs/cache", progress: bool = True):
    """(model, tokenizer, model_source) for the config's profile."""
    from transformers import AutoModelForCausalLM

    from fr3e.cli import resolve_model  # the names every command accepts

    dtype = getattr(torch, config.model.dtype)
    if config.profile == "tiny":
        from fr3e.tasks.tokenizer import load_tokenizer

        source = Path(resolve_model(config.model.base, cache_dir=cache_dir, progress=progress))
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
        from fr3e.tasks.arithmetic import make_split

        return make_split("train", config.data.train_size or 4096, seed=0)
    if config.data.train == "paper/train":
        from fr3e.data import load_train_mix

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


def token_logprobs(model, ids: torch.Tensor, mask: torch.Tensor, want_entropy: bool = False,
                   chunk: int = LOGPROB_CHUNK):
    """Log-prob of every next token, and optionally the full-vocabulary entropy, aligned on targets.

    ids, mask: (B, L). returns logp (B, L-1) fp32 for targets ids[:, 1:], entropy (B, L-1) fp32 or None.

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
        if want_entropy:
            ents.append(entropy_mod.token_entropy(lg.detach(), mask[:, 1:][:, s: s + chunk], chunk=chunk))
    logp = torch.cat(pieces, dim=1)  # (B, L-1)
    return logp, (torch.cat(ents, dim=1) if want_entropy else None)


# ------------------------------------------------------------------------------------------ trainer
class Trainer:
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
        self.newline_id = self.tokenizer.convert_tokens_to_ids("\n") if config.fr3e.scorer == "newline" else None

    # -------------------------------------------------------------------------------- components
    def _build_engine(self):
        return build_engine(self.config, self.accelerator.unwrap_model(self.model), self.tokenizer,
                            self.model_source, self.world)

    def _engine_call(self, name: str) -> None:
        """Optional engine hooks (vLLM sleep mode); the HF engine has none."""
        hook = getattr(self.engine, name, None)
        if hook is not None:
            hook()

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _reward(self, text: str, answer: str) -> float:
        from fr3e.rewards import reward

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
        mb = self.config.optim.micro_batch_size
        chunks = [rows[s: s + mb] for s in range(0, len(rows), mb)]
        n_forward = self._max(len(chunks))
        out = []
        with torch.no_grad():
            for k in range(n_forward):
                chunk = chunks[k] if k < len(chunks) else None
                ids, mask = pad_right(chunk or [[self.tokenizer.eos_token_id] * 2], self.tokenizer.pad_token_id,
                                      self.accelerator.device)
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
        if kept:
            T = max(len(r) for _, _, r, _ in kept)
            resp_mask = torch.zeros(len(kept), T, dtype=torch.bool)
            resp_ent = torch.zeros(len(kept), T)
            resp_logp = torch.zeros(len(kept), T)
            resp_ids = torch.full((len(kept), T), self.tokenizer.pad_token_id, dtype=torch.long)
            for b, (p, _, resp, _) in enumerate(kept):
                logp, ent = outs[b]
                s, n = len(p.ids) - 1, len(resp)  # target index of response token 0
                resp_mask[b, :n] = True
                resp_ent[b, :n] = ent[s: s + n]
                resp_logp[b, :n] = logp[s: s + n]
                resp_ids[b, :n] = torch.tensor(resp, dtype=torch.long)
        timer["time_forward"] += time.perf_counter() - t0
        if kept:
            eos = set(self.engine.eos_token_ids)
            ends = torch.tensor([len(r) > 0 and r[-1] in eos for _, _, r, _ in kept])
            gen = torch.Generator().manual_seed(self._seed("random-scorer", self._round))
            scores = entropy_mod.uncertainty_scores(
                cfg.scorer, mask=resp_mask, entropies=resp_ent, token_logprobs=resp_logp, response_ids=resp_ids,
                newline_id=self.newline_id, generator=gen)  # (B, T)
            eligible = anchors_mod.eligible_positions(resp_mask, ends)
            eligible &= entropy_mod.scored_positions(cfg.scorer, scores)  # newline: boundaries only
            anchor_pos = anchors_mod.select_anchors(scores, eligible, cfg.num_anchors, cfg.min_anchor_gap)  # (B, K)
            timer["entropy_base_sum"] = resp_ent.sum().item()
            timer["entropy_base_tokens"] = int(resp_mask.sum())
        out = []
        by_prompt: dict[int, list[int]] = defaultdict(list)
        for b, (p, *_rest) in enumerate(kept):
            by_prompt[p.prompt_id].append(b)
        for p in prompts:
            rows = by_prompt.get(p.prompt_id, [])
            trajs = [(kept[b][1], kept[b][2], anchor_pos[b].tolist()) for b in rows]
            states = build_states(p.prompt_id, p.ids, trajs)
            info = {"trajectories": [
                {"trajectory_id": kept[b][1], "response": kept[b][2], "reward": kept[b][3],
                 "anchors": [a for a in anchor_pos[b].tolist() if a >= 0],
                 "entropy": resp_ent[b, : len(kept[b][2])].tolist(),
                 "scores": scores[b, : len(kept[b][2])].tolist()} for b in rows]}
            out.append((p, states, info))
        return out

    def _explore(self, prompts: list[PromptItem], timer: dict) -> list[PromptWork]:
        """States → M continuations each (or an adaptive number, `fr3e.adaptive_budget`) → rewards → V, α, A
        (before any filtering)."""
        cfg = self.config
        if cfg.method == "fr3e":
            planned = self._first_return(prompts, timer)
            m, budget = cfg.fr3e.continuations_per_state, cfg.continuation_budget
        else:
            planned = [(p, build_states(p.prompt_id, p.ids, []), {}) for p in prompts]
            m, budget = cfg.grpo.rollouts_per_prompt, cfg.data.max_response_tokens
        states = [s for _, sts, _ in planned for s in sts]
        answers = {p.prompt_id: p.answer for p, _, _ in planned}
        if cfg.method == "fr3e" and cfg.fr3e.adaptive_budget:
            by_key = self._explore_adaptive(states, answers, budget, timer)
        else:
            t0 = time.perf_counter()
            # Called even with no state: an engine call may be a collective (vLLM tensor parallelism).
            conts = self._sample([s.prefix_ids for s in states], m, budget, "explore")
            timer["time_generate"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            by_key = {s.key: self._score_continuations(s, comps, answers[s.key.prompt_id])
                      for s, comps in zip(states, conts)}
            timer["time_score"] += time.perf_counter() - t0
        works = []
        for p, sts, info in planned:
            rewards = {s.key: [r.reward for r in by_key[s.key]] for s in sts}
            values = {k: float(state_values(torch.tensor([v]))[0]) for k, v in rewards.items()}
            chains = value_chains(sts)
            alpha = {variant: modulation_by_key(chains, values, variant) for variant in ("paper", "official", "none")}
            rolls = [r for s in sts for r in by_key[s.key]]
            adv = keyed_advantages(torch.tensor([r.reward for r in rolls]), [r.key for r in rolls],
                                   alpha[cfg.modulation], cfg.grpo.advantage_scale)
            for r, a in zip(rolls, adv.tolist()):
                r.advantage = a
            works.append(PromptWork(p, sts, rewards, rolls, info, values, alpha))
        return works

    def _score_continuations(self, state: State, comps, answer: str) -> list[Rollout]:
        """Rollouts of one state's continuations, each scored on prefix ⊕ continuation (fr3e.score_prefix)."""
        rolls = []
        for c in comps:
            prefix_resp = state.prefix_ids[state.prompt_len:]
            scored = prefix_resp + c.token_ids if self.config.fr3e.score_prefix else c.token_ids
            r = self._reward(self._decode(scored), answer)
            rolls.append(Rollout(state.key, state.prefix_ids, state.prompt_len, c.token_ids, c.logprobs, r))
        return rolls

    def _explore_adaptive(self, states: list[State], answers: dict, max_new: int, timer: dict) -> dict:
        """Continuations in rounds under the adaptive budget (issue 12 §3, `fr3e.budget.next_round`).

        The pool is this call's states × M; each round asks the rule how many more each state gets, samples
        them (one engine call per distinct count, seeded by (step, process, generation round, adaptive round,
        count)), scores them and repeats until the rule gives nothing. Every process runs the same rounds and
        calls (an engine call may be a collective), sampling nothing for counts it does not need.
        returns state key -> rollouts in sampling order (between R and CAP_FACTOR·M of them).
        """
        from fr3e import budget as budget_mod

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
                    rolls[j].extend(self._score_continuations(states[j], comps, answers[states[j].key.prompt_id]))
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

    def _sum(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([float(value)], device=self.accelerator.device)
        return self.accelerator.reduce(t, reduction="sum").item()

    def _gmean(self, values: list[float]) -> float:
        """Mean over all processes."""
        n = self._sum(len(values))
        return self._sum(float(sum(values))) / n if n else float("nan")

    def _counts(self, outcomes: list[str], prefix: str) -> dict:
        """All-Right / All-Wrong / mixed group counts, summed over processes."""
        right, wrong = outcomes.count(ALL_RIGHT), outcomes.count(ALL_WRONG)
        return {f"{prefix}_all_right": int(self._sum(right)), f"{prefix}_all_wrong": int(self._sum(wrong)),
                f"{prefix}_mixed": int(self._sum(len(outcomes) - right - wrong))}

    def _gather(self, values: list) -> list:
        """Concatenation of every process's list, in process order (same on every process)."""
        if self.world == 1:
            return list(values)
        from accelerate.utils import gather_object

        return list(gather_object(list(values)))

    def _max(self, value: int) -> int:
        if self.world == 1:
            return value
        t = torch.tensor([value], device=self.accelerator.device)
        return int(self.accelerator.gather(t).max().item())

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
        old, ent_sum, tok_sum, gap_sum = [], 0.0, 0, 0.0
        for r, s, n, (logp, ent) in zip(rollouts, starts, lens, outs):
            old.append(logp[s: s + n])  # (n,) old log-probs of the continuation tokens
            ent_sum += ent[s: s + n].sum().item()
            tok_sum += n
            gap_sum += (logp[s: s + n] - torch.tensor(r.engine_logprobs, dtype=torch.float32)).abs().sum().item()
        timer["time_forward"] += time.perf_counter() - t0
        stats = defaultdict(float)
        # Summed over processes (metrics describe the whole batch, not process 0's share).
        ent_sum, tok_sum, gap_sum = self._sum(ent_sum), self._sum(tok_sum), self._sum(gap_sum)
        stats["entropy"] = ent_sum / tok_sum if tok_sum else float("nan")
        stats["logprob_gap"] = gap_sum / max(tok_sum, 1)
        # Mini-batches: whole groups (a group's advantages sum to zero, so the tokens its rollouts share get
        # no net push; split across optimizer steps they would get a random one), seeded order.
        t0 = time.perf_counter()
        parts = minibatches_by_group([r.key for r in rollouts], cfg.updates_per_batch, self._seed("minibatch"))
        n_updates = self._max(len(parts))
        for u in range(n_updates):
            part = parts[u] if u < len(parts) else []
            tokens_global = self._sum(sum(lens[i] for i in part))
            seqs_global = self._sum(len(part))
            micro = [part[s: s + mb] for s in range(0, len(part), mb)]
            n_micro = self._max(len(micro))
            self.optimizer.zero_grad(set_to_none=True)
            for k in range(n_micro):
                chunk = micro[k] if k < len(micro) else []
                sync = contextlib.nullcontext() if k == n_micro - 1 else self.accelerator.no_sync(self.model)
                with sync:
                    loss, st = self._micro_loss(chunk, rows, starts, lens, adv, old, mb, tokens_global, seqs_global)
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
        self.scheduler.step()
        timer["time_backward"] += time.perf_counter() - t0
        stats["loss"] /= max(n_updates, 1)
        for name in ("loss", "tokens", "clip_low", "clip_high", "dual_clip", "ratio_sum", "kl_sum"):
            stats[name] = self._sum(stats.get(name, 0.0))  # each process holds its share of the global sums
        return stats

    @staticmethod
    def _target_mask(shape, starts, lens) -> torch.Tensor:
        m = torch.zeros(shape, dtype=torch.bool)  # (B, L-1)
        for b, (s, n) in enumerate(zip(starts, lens)):
            m[b, s: s + n] = True
        return m

    def _micro_loss(self, chunk, rows, starts, lens, adv, old, mb, tokens_global, seqs_global):
        cfg = self.config.optim
        if not chunk:  # zero-weight pass so every process runs the same number of backward calls
            dummy = rows[:1] or [[self.tokenizer.eos_token_id] * 2]
            ids, mask = pad_right(dummy, self.tokenizer.pad_token_id, self.accelerator.device)
            logp, _ = token_logprobs(self.model, ids, mask)
            return logp.sum() * 0.0, {}
        ids, mask = pad_right([rows[i] for i in chunk], self.tokenizer.pad_token_id, self.accelerator.device)
        logp, _ = token_logprobs(self.model, ids, mask)
        tmask = self._target_mask(logp.shape, [starts[i] for i in chunk], [lens[i] for i in chunk])
        old_logp = torch.zeros(logp.shape)  # (b, L-1)
        for b, i in enumerate(chunk):
            old_logp[b][tmask[b]] = old[i]
        dev = logp.device
        loss, st = policy_loss(logp, old_logp.to(dev), adv[chunk].to(dev), tmask.to(dev), cfg.eps_low, cfg.eps_high, cfg.dual_clip,
                               cfg.loss_aggregation, num_tokens=max(tokens_global, 1), num_seqs=max(seqs_global, 1))
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
        if any(not math.isfinite(x) for x in rewards_all):
            raise TrainingError(f"step {self.step_index + 1}: a reward is NaN/inf; the reward function must return "
                                "finite 0/1 values (see fr3e.rewards.reward).")
        # Every process enters the update (collectives inside), even one whose groups were all filtered.
        stats = self._update(rollouts, timer) if rollouts or self.world > 1 else {"entropy": float("nan"), "loss": 0.0}
        if not rollouts:
            logger.warning("step %d: no group carried signal after %d refills; no update", self.step_index + 1, rounds)
        self._engine_call("wake_up")
        self.engine.sync_weights(self.accelerator.unwrap_model(self.model))
        self.step_index += 1
        row = self._metrics_row(all_works, kept, rollouts, rounds, stats, timer, engine_before)
        row["time_step"] = time.perf_counter() - t_start
        row["time_other"] = row["time_step"] - sum(timer[k] for k in ("time_generate", "time_score", "time_forward",
                                                                      "time_backward"))
        return row

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
        # Prefill computed vs served from a prefix cache (issue 12 §1): the engine counters are cumulative and the
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
        return row

    # --------------------------------------------------------------------------------- samples
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

    # ------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> None:
        """Write a checkpoint of every process's state: into a temporary directory, then a manifest of
        checksums (last), then renamed into place. A write that fails (disk full, permission) stops the run
        with the previous checkpoint intact; a crash mid-write leaves a directory without a valid manifest,
        which resuming skips."""
        self.accelerator.wait_for_everyone()
        tmp = self.run.checkpoints / f".tmp-step-{self.step_index:06d}"
        if self.accelerator.is_main_process and tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        self.accelerator.wait_for_everyone()
        try:
            self.accelerator.save_state(str(tmp))
            self.accelerator.wait_for_everyone()  # every process has written its RNG state into tmp
            if self.accelerator.is_main_process:
                atomic_write_json(tmp / "trainer_state.json", {
                    "step": self.step_index, "stream_position": self.stream.position, "wall": self.wall,
                    "engine": self.engine.counters.as_dict()})
                write_manifest(tmp)
                self.run.commit_checkpoint(tmp, self.step_index)
        except OSError as exc:
            latest = usable_checkpoints(self.run.checkpoints)[0]
            kept = f"the previous checkpoint ({latest[0].name}) is intact" if latest else "no earlier checkpoint exists"
            raise TrainingError(f"step {self.step_index}: could not write the checkpoint under {self.run.checkpoints} "
                                f"({exc.strerror or exc}); {kept}. Free space or fix the permissions, then run the "
                                "same command to resume.") from exc
        self.accelerator.wait_for_everyone()

    def load_checkpoint(self) -> bool:
        """Resume from the newest checkpoint whose manifest verifies (skipping, with a warning, any newer one
        that is truncated or corrupted); without one, start over with empty logs."""
        choice = []
        if self.accelerator.is_main_process:
            good, skipped = usable_checkpoints(self.run.checkpoints)
            for line in skipped:
                logger.warning("skipping checkpoint %s", line)
            choice = [good[0].name] if good else []
        choice = self._gather(choice)  # the main process's choice, on every process
        if not choice:
            # A run killed before its first checkpoint starts over: rows it logged would be written twice.
            if self.accelerator.is_main_process:
                self.run.truncate_logs(0)
            self.accelerator.wait_for_everyone()
            return False
        import json

        ckpt = self.run.checkpoints / choice[0]
        state = json.loads((ckpt / "trainer_state.json").read_text())
        self.accelerator.load_state(str(ckpt))
        self.step_index = state["step"]
        self.stream.position = state["stream_position"]
        self.wall = state.get("wall", 0.0)
        self.engine.sync_weights(self.accelerator.unwrap_model(self.model))
        if self.accelerator.is_main_process:
            self.run.truncate_logs(self.step_index)
        self.accelerator.wait_for_everyone()
        logger.info("resumed %s from step %d", self.run.path, self.step_index)
        return True

    # ------------------------------------------------------------------------------ interruption
    def _install_stop_handlers(self) -> dict:
        """SIGTERM / SIGINT ask for a stop at the next step boundary (a second Ctrl-C stops at once)."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}

        def ask(signum, frame):
            self._stop_signal = signal.Signals(signum).name
            signal.signal(signum, previous[signum])  # a second signal acts at once
            logger.warning("%s received: stopping after this step with a checkpoint", self._stop_signal)

        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        for sig in previous:
            signal.signal(sig, ask)
        return previous

    def _stop_requested(self) -> bool:
        """Whether any process was asked to stop (every process calls this once per step: a reduction)."""
        return self._sum(1.0 if self._stop_signal else 0.0) > 0

    # ---------------------------------------------------------------------------------- eval
    def evaluate(self) -> list[dict]:
        """Evaluate the current policy on the configured benchmarks, sharded over the processes.

        Every process samples its share of the problems with its own engine and the per-problem results are
        gathered, so an evaluation takes 1/world of the time and no process waits in a collective while
        another evaluates alone. Every process returns the same rows; the main process writes them.
        """
        from fr3e.evaluate import eval_rows, evaluate

        cfg = self.config.data
        policy = self.accelerator.unwrap_model(self.model)
        report = evaluate(policy, benchmarks=list(cfg.eval_benchmarks), local_files=cfg.local_files, n=cfg.eval_n,
                          temperature=cfg.eval_temperature, top_p=cfg.eval_top_p,
                          max_new_tokens=cfg.max_response_tokens, num_problems=cfg.eval_problems or None,
                          seed=derive_seed(self.config.seed, "eval"), engine=self.engine, tokenizer=self.tokenizer,
                          progress=False, rank=self.rank, world=self.world, gather=self._gather)
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
        while self.step_index < cfg.steps:
            t0 = time.perf_counter()
            row = self.step()
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

    def save_model(self, evals: list[dict] | None = None) -> None:
        """Write the final policy (full weights), tokenizer and model card (README.md, with `evals`, the
        final evaluation rows) to the run's model directory.

        Every process takes part: gathering FSDP-sharded weights into one state dict is a collective. The
        main process writes the files.
        """
        state = self.accelerator.get_state_dict(self.model)
        policy = self.accelerator.unwrap_model(self.model)
        if self.accelerator.is_main_process:
            policy.save_pretrained(self.run.model_dir, state_dict=state, safe_serialization=True)
            self.tokenizer.save_pretrained(self.run.model_dir)
            write_model_card(self.run.model_dir, self.config, evals or [])
        self.accelerator.wait_for_everyone()


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
    import json

    from fr3e.config import ConfigError, diff_configs

    diff = diff_configs(json.loads((run_dir / "config.json").read_text()), config.to_dict())
    if diff:
        raise ConfigError(f"run directory {run_dir} holds a different config: " + "; ".join(diff)
                          + ". Use another --run-dir, or delete the directory to start over.")
