"""What one optimizer step of the GRPO++ loss does to a warm start, with a fresh AdamW vs. plain SGD.

    python reproduce/sweeps/first_step.py [--model DIR] [--lrs 5e-5 1e-4 3e-4 1e-3] [--out FILE]

Reproduces the diagnosis of "RL raises entropy on the tiny world": the trainer builds a fresh
AdamW (betas 0.9/0.999) and applies the learning rate from step 1 (no warm-up). A fresh Adam's first
update is lr · g / |g| = lr · sign(g) on *every* coordinate, whatever the coordinate's signal-to-noise
ratio; a 64-rollout policy gradient is mostly noise, so the first steps are an lr-sized random-sign
perturbation of all weights. The script takes one batch of rollouts (8 prompts × 8, T=1, the trainer's
token-mean loss at ratio 1), computes the gradient once, and applies, from the same weights:
- `adam`: one fresh-AdamW step (as the trainer's first step);
- `sign-random`: lr · a random sign per coordinate (the same step size, no signal at all);
- `sgd-matched`: the plain gradient direction scaled to the Adam step's L2 norm;
- `adam-right-only` / `adam-wrong-only`: the Adam step of only the A > 0 (right) or A < 0 (wrong) rollouts'
  part of the loss (which half moves the entropy).
It reports, per variant and lr, the mean token KL(base ‖ new) and entropy on held-out rollouts, and
avg@8 on 64 `medium` problems (T=1, top_p 0.95). Single process, 1 thread.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch


def load_warm_start(model_dir: str | None, train: bool = False):
    """(path, tokenizer, model) of a warm-start directory (default: the cached `general`), 1 torch thread,
    seed 0: the common start of every diagnostic in this folder."""
    from transformers import AutoModelForCausalLM

    from fr3e.tasks.tokenizer import load_tokenizer
    from fr3e.tasks.warm_start import warm_start

    torch.set_num_threads(1)
    torch.manual_seed(0)
    path = Path(model_dir) if model_dir else warm_start("general", progress=False)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return path, load_tokenizer(path), model.train(train)


def rollouts(engine, tok, problems, n, seed):
    from fr3e.method.rewards import reward

    prompts = [tok(p["prompt"]).input_ids for p in problems]
    out = engine.generate(prompts, n=n, max_new_tokens=96, temperature=1.0, top_p=1.0, seed=seed)
    rows, rewards, starts = [], [], []
    for p, pid, comps in zip(problems, prompts, out):
        for c in comps:
            rows.append(pid + c.token_ids)
            starts.append(len(pid) - 1)
            rewards.append(reward(tok.decode(c.token_ids, skip_special_tokens=True), p["answer"]))
    return rows, torch.tensor(rewards).view(len(problems), n), starts


def batch(rows, starts, pad):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    tmask = torch.zeros((len(rows), width - 1), dtype=torch.bool)
    for i, (r, s) in enumerate(zip(rows, starts)):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = True
        tmask[i, s: len(r) - 1] = True
    return ids, mask, tmask


def logprobs(model, ids, mask):
    logits = model(input_ids=ids, attention_mask=mask.long()).logits[:, :-1].float()  # (B, L-1, V)
    return torch.log_softmax(logits, -1)


def kl_and_entropy(base, model, ids, mask, tmask):
    with torch.no_grad():
        lp0, lp1 = logprobs(base, ids, mask), logprobs(model, ids, mask)
        kl = (lp0.exp() * (lp0 - lp1)).sum(-1)[tmask].mean().item()
        ent = -(lp1.exp() * lp1).sum(-1)[tmask].mean().item()
    return kl, ent


def accuracy(model, tok, problems, n=8, seed=7):
    from fr3e.engines.hf import HFEngine
    from fr3e.method.rewards import reward

    eng = HFEngine(model, tok, batch_size=256)
    out = eng.generate([tok(p["prompt"]).input_ids for p in problems], n=n, max_new_tokens=96, temperature=1.0,
                       top_p=0.95, seed=seed)
    hits = [reward(tok.decode(c.token_ids, skip_special_tokens=True), p["answer"]) for p, cs in zip(problems, out)
            for c in cs]
    return 100 * sum(hits) / len(hits)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="warm-start directory (default: the cached `general`)")
    parser.add_argument("--lrs", type=float, nargs="+", default=[5e-5, 1e-4, 3e-4, 1e-3])
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    args = parser.parse_args(argv)
    from fr3e.engines.hf import HFEngine
    from fr3e.method.losses import policy_loss
    from fr3e.tasks.arithmetic import make_split

    path, tok, base = load_warm_start(args.model)
    train = make_split("train", 4096, seed=0)
    engine = HFEngine(base, tok, batch_size=256)
    rows, rewards, starts = rollouts(engine, tok, [train[i] for i in range(8)], 8, seed=1)
    held_rows, _, held_starts = rollouts(engine, tok, [train[i] for i in range(100, 132)], 4, seed=2)
    medium = [dict(r) for r in make_split("medium", 64, seed=0)]
    adv = (rewards - rewards.mean(-1, keepdim=True)).flatten()  # (B,)
    ids, mask, tmask = batch(rows, starts, tok.pad_token_id)
    hid, hmask, htmask = batch(held_rows, held_starts, tok.pad_token_id)

    model = copy.deepcopy(base).train()
    lp = logprobs(model, ids, mask).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, L-1)

    def gradient(weights):  # (B,) advantages -> {name: grad} of the trainer's token-mean loss at ratio 1
        model.zero_grad(set_to_none=True)
        loss, _ = policy_loss(lp, lp.detach(), weights, tmask, 0.2, 0.28, 3.0)
        loss.backward(retain_graph=True)
        return {n: p.grad.detach().clone() for n, p in model.named_parameters()}

    grads = gradient(adv)
    # The two halves of the same gradient: right rollouts pushed up (A > 0), wrong ones pushed down (A < 0).
    grads_pos, grads_neg = gradient(adv.clamp(min=0)), gradient(adv.clamp(max=0))
    gnorm = torch.sqrt(sum((g ** 2).sum() for g in grads.values())).item()
    out = {"batch_reward": rewards.mean().item(), "grad_norm": gnorm,
           "base": {"kl": 0.0, "entropy": kl_and_entropy(base, base, hid, hmask, htmask)[1],
                    "medium_avg8": accuracy(base, tok, medium)}, "variants": []}
    sys.stdout.write(f"batch reward {out['batch_reward']:.3f}, grad norm {gnorm:.3f}, base entropy "
                     f"{out['base']['entropy']:.4f}, base medium avg@8 {out['base']['medium_avg8']:.1f}\n")
    gen = torch.Generator().manual_seed(0)
    for lr in args.lrs:
        # Fresh AdamW's first step (bias-corrected): lr * g / (|g| + eps) -> ±lr per coordinate.
        adam = {n: lr * g / (g.abs() + 1e-8) for n, g in grads.items()}
        adam_norm = torch.sqrt(sum((u ** 2).sum() for u in adam.values()))
        variants = {
            "adam": adam,
            "sign-random": {n: lr * (torch.randint(0, 2, g.shape, generator=gen) * 2 - 1).float()
                            for n, g in grads.items()},
            "sgd-matched": {n: g * (adam_norm / gnorm) for n, g in grads.items()},
            "adam-right-only": {n: lr * g / (g.abs() + 1e-8) for n, g in grads_pos.items()},
            "adam-wrong-only": {n: lr * g / (g.abs() + 1e-8) for n, g in grads_neg.items()},
        }
        for name, update in variants.items():
            new = copy.deepcopy(base)
            with torch.no_grad():
                for n, p in new.named_parameters():
                    p -= update[n]
            kl, ent = kl_and_entropy(base, new, hid, hmask, htmask)
            acc = accuracy(new, tok, medium)
            out["variants"].append({"lr": lr, "update": name, "kl": kl, "entropy": ent, "medium_avg8": acc})
            sys.stdout.write(f"lr {lr:.0e} {name:<12} KL {kl:.4f}  entropy {ent:.4f}  medium avg@8 {acc:5.1f}\n")
            sys.stdout.flush()
    if args.out:
        from fr3e.utils.io import atomic_write_json

        atomic_write_json(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
