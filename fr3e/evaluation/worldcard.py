"""What a tiny world offers RL, measured on one model: forks, headroom, diversity, free length.

`measure(model_dir, world)` samples `n` responses per problem of every evaluation split (T=1, the evaluation's
top-p) and a batch of training prompts at the group size G, and reports per split:

- `avg` / `pass`: avg@n and pass@n;
- `forks_median`: the median response's number of positions whose next-token entropy is >= `FORK_NATS`
  (a fork: the policy is unsure there);
- `step_entropy`: the mean next-token entropy at the positions right after a step delimiter (in the path
  world: every move), the quantity that falls when a policy becomes deterministic at its choice points;
- `distinct_correct_median`: the median problem's number of distinct correct responses among its n samples
  (distinct by the world's `solution_key` where it has one: in Countdown the successful attempt, not the search
  before it);
- `length_cv`: the mean over problems of the within-problem coefficient of variation of response length;
- on the training prompts, `mixed_groups`: the share of groups of G samples that are neither all right nor
  all wrong (the groups that carry a GRPO signal).

The gate a world must pass before it hosts the Table 1 study reads these numbers (reproduce/worlds/).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import torch

from fr3e.method.entropy import token_entropy
from fr3e.tasks.worlds import get_world, reward

FORK_NATS = 0.5
"""Entropy (nats) from which a position counts as a fork."""


def _entropies(model, tokenizer, prompt_ids: list[int], responses: list[list[int]]) -> list[list[float]]:
    """Next-token entropy (nats, T=1) at every response position, one list per response."""
    rows = [prompt_ids + r for r in responses]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits  # (B, L, V)
    ent = token_entropy(logits)  # (B, L): entropy of the token after each position
    p = len(prompt_ids)
    return [ent[i, p - 1: p - 1 + len(r)].tolist() for i, r in enumerate(responses)]


def _sample(engine, tokenizer, prompts: list[str], n: int, max_new_tokens: int, top_p: float, seed: int):
    from fr3e.data.paper import encode_prompt

    ids = [encode_prompt(tokenizer, p) for p in prompts]
    return ids, engine.generate(ids, n=n, max_new_tokens=max_new_tokens, temperature=1.0, top_p=top_p, seed=seed)


def measure(model_dir: str | Path, world: str, n: int = 16, group_size: int = 8, train_prompts: int = 128,
            problems: int | None = None, max_new_tokens: int = 96, top_p: float = 0.95, seed: int = 0) -> dict:
    """The world's numbers for the model in `model_dir` (see the module docstring). Deterministic in `seed`."""
    from transformers import AutoModelForCausalLM

    from fr3e.engines.hf import HFEngine
    from fr3e.tasks.tokenizer import load_tokenizer

    task = get_world(world)
    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    engine = HFEngine(model, tokenizer, batch_size=256)
    delimiter = tokenizer.encode(task.STEP_DELIMITER, add_special_tokens=False)
    solution_key = getattr(task, "solution_key", str.strip)  # what tells two correct answers apart
    eos = tokenizer.eos_token_id
    out = {"world": world, "model": str(model_dir), "n": n, "group_size": group_size, "top_p": top_p,
           "fork_nats": FORK_NATS, "splits": {}}
    for b, split in enumerate(task.SPLITS):
        size = task.default_eval_sizes[split] if problems is None else min(problems, task.max_split_size(split))
        ds = task.make_split(split, size, seed=0)
        prompt_ids, samples = _sample(engine, tokenizer, list(ds["prompt"]), n, max_new_tokens, top_p, seed + b)
        correct, forks, step_ent, distinct, cvs, lengths = [], [], [], [], [], []
        for pids, row, answer in zip(prompt_ids, samples, ds["answer"]):
            texts = [tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in row]
            right = [reward(t, answer) for t in texts]
            correct.append(right)
            distinct.append(len({solution_key(t) for t, r in zip(texts, right) if r}))
            body = [[t for t in c.token_ids if t != eos] or [eos] for c in row]
            lens = [len(c.token_ids) for c in row]
            lengths += lens
            mean = statistics.fmean(lens)
            cvs.append(statistics.pstdev(lens) / mean if mean else 0.0)
            for toks, ents in zip(body, _entropies(model, tokenizer, pids, body)):
                forks.append(sum(e >= FORK_NATS for e in ents))
                starts = [i for i in range(1, len(toks)) if toks[i - 1: i] == delimiter[-1:]]
                step_ent += [ents[i] for i in starts]
        c = np.asarray(correct, dtype=float)  # (problems, n)
        out["splits"][split] = {
            "problems": len(ds), "avg": float(c.mean()), "pass": float((c.max(axis=1) > 0).mean()),
            "forks_median": float(np.median(forks)), "step_entropy": float(np.mean(step_ent)) if step_ent else 0.0,
            "distinct_correct_median": float(np.median(distinct)), "length_cv": float(np.mean(cvs)),
            "mean_length": float(np.mean(lengths)),
        }
    train = task.make_split("train", min(train_prompts, task.max_split_size("train")), seed=1)
    _, samples = _sample(engine, tokenizer, list(train["prompt"]), group_size, max_new_tokens, top_p, seed + 100)
    mixed = [0 < sum(reward(tokenizer.decode(c.token_ids, skip_special_tokens=True), a) for c in row) < group_size
             for row, a in zip(samples, train["answer"])]
    out["train"] = {"prompts": len(train), "mixed_groups": float(np.mean(mixed))}
    splits = out["splits"].values()
    out["mean"] = {k: float(np.mean([s[k] for s in splits])) for k in ("avg", "pass", "forks_median",
                                                                         "distinct_correct_median", "length_cv",
                                                                         "step_entropy", "mean_length")}
    return out
