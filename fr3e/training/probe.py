"""The entropy probe (`Probe`, mixed into `fr3e.training.trainer.Trainer`): the policy's token entropy on one
fixed probe set, before the first step, every `probe_every` steps and after the last (probe.jsonl).

Why: the training metrics cannot compare the two methods' entropy, because FR3E trains on continuations of
states and GRPO++ on rollouts from the prompt, two token populations. The probe measures every run of one seed
on the same prompts, n and sampling seeds (full responses from the prompt), so "FR3E's entropy falls less"
is read as a paired change from before training (`fr3e.study.claims`, the primary entropy claim). The probe
is a measurement, not training: the engine's token counters are restored after it.
"""

from __future__ import annotations

import copy
import time

import numpy as np

from fr3e.data.paper import encode_prompt
from fr3e.utils.io import read_jsonl, rewrite_jsonl
from fr3e.utils.seeds import derive_seed


class Probe:
    """Needs the trainer's config, engine, tokenizer, training set, run directory and `Collectives`."""

    _probe_set: list[list[int]] | None = None  # token ids of the probe prompts, built on first use

    def probe(self) -> dict:
        """Entropy of the current policy on a fixed probe set: the same `probe_prompts` prompts, `probe_n`
        responses each, sampled with seeds that depend on (seed, probe, step) only, so FR3E and GRPO++ runs of one
        seed are measured on one token population: full responses from the prompt. Sharded over processes;
        every process returns the same row."""
        cfg = self.config
        if self._probe_set is None:
            order = np.random.default_rng(derive_seed(cfg.seed, "probe-set")).permutation(len(self.train_set))
            rows = [self.train_set[int(i)] for i in order[: cfg.probe_prompts]]
            self._probe_set = [encode_prompt(self.tokenizer, r["prompt"]) for r in rows]
        mine = self._probe_set[self.rank:: self.world]
        t0 = time.perf_counter()
        counters = copy.deepcopy(self.engine.counters)  # a measurement, not training: its tokens are not a cost
        rc = cfg.rollout
        comps = self.engine.generate(mine, n=cfg.probe_n, max_new_tokens=cfg.data.max_response_tokens,
                                     temperature=rc.temperature, top_p=rc.top_p,
                                     seed=derive_seed(cfg.seed, "probe", self.step_index, self.rank))
        rows = [(p, list(c.token_ids)) for p, group in zip(mine, comps) for c in group]
        outs = self._forward_rows([p + resp for p, resp in rows], want_entropy=True)  # collective-safe
        ent_sum = sum(float(ent[len(p) - 1: len(p) - 1 + len(resp)].sum()) for (p, resp), (_, ent) in zip(rows, outs))
        self.engine.counters = counters
        tokens, ent_total, responses = (self._sum(x) for x in (sum(len(r) for _, r in rows), ent_sum, len(rows)))
        return {"step": self.step_index, "entropy": ent_total / tokens if tokens else None, "tokens": int(tokens),
                "responses": int(responses), "response_length": tokens / responses if responses else None,
                "prompts": cfg.probe_prompts, "n": cfg.probe_n, "seconds": time.perf_counter() - t0}

    def _write_probe(self, row: dict) -> None:
        if self.accelerator.is_main_process:  # a row for this step replaces one left by an interrupted attempt
            rows = [r for r in read_jsonl(self.run.probe_file) if r.get("step") != row["step"]]
            rewrite_jsonl(self.run.probe_file, rows + [row])
