"""Our GRPO++ loss and group advantages equal what TRL's `GRPOTrainer` computes on the same batch.

TRL's own code runs here, not a copy of it: a real `GRPOTrainer` (loss_type "dapo", beta 0, ε_low 0.2,
ε_high 0.28, T = 1) on a tiny random Qwen3 model generates one batch with its `_generate_and_score_completions`
(so the advantages, left-padded prompt ids, completion mask and `num_items_in_batch` are TRL's), and its
`_compute_loss` gives the loss. Our side recomputes log-probs with `fr3e.training.trainer.token_logprobs` over
right-padded prompt ⊕ completion rows (as our trainer does) and calls `fr3e.method.losses.policy_loss` with
`dual_clip=0`, "token-mean" and the global token count. Loss values and gradients must agree.

Where the two are equal, and where they differ (each asserted below, not just stated):
- Advantages: TRL scale_rewards "group" = (r - mean) / (unbiased std + 1e-4) = `group_advantages(r, "std")`;
  scale_rewards "none" = r - mean = `group_advantages(r, "none")`. Equal.
- Loss, one optimizer step per generation batch (TRL steps_per_generation == gradient_accumulation_steps):
  TRL divides Σ per-token loss by `num_items_in_batch` = completion tokens of the whole generation batch
  (gathered over processes; rescaled by ga / spg = 1), summed over its accumulation micro-batches; ours
  divides by the global token count passed as `num_tokens`. Equal, whole batch or split in micro-batches.
- Several optimizer steps per generation batch (TRL spg = 2, ga = 1; ours `optim.updates_per_batch=2`):
  TRL normalises each step by num_items_in_batch · ga / spg, the *average* token count per step; ours by the
  exact token count of that mini-batch. So TRL_k = ours_k · n_k / (N / spg): not equal unless the two
  halves hold the same number of tokens.
- Dual clip (authors' c = 3, on in our recipes) has no TRL counterpart: the equality tests use dual_clip=0, and
  one test asserts that with c = 3 ours = TRL − Σ_{A<0, ρ>c} (−A)(ρ − c) / N exactly.
- Not exercised (documented): TRL's log-probs are of logits / temperature, ours of the raw logits (equal at
  T = 1, the paper's and the recipes' setting). Position ids: TRL left-pads prompts and lets positions count
  from the padding, ours right-pads; rotary attention depends only on position differences, so the
  log-probs agree to float round-off (hence the 1e-5 tolerances).
"""

import pytest
import torch

from fr3e.method.advantages import group_advantages, keyed_advantages
from fr3e.method.losses import policy_loss
from fr3e.training.policy import pad_right, token_logprobs

pytest.importorskip("trl")

P, G, T_MAX = 4, 4, 8  # prompts, generations per prompt, max completion tokens
EPS_LOW, EPS_HIGH = 0.2, 0.28
# Group 0: mean .5, unbiased std sqrt(4·.25/3) = .57735 → ±.5/.57745 = ±.86588; groups 1 and 3 (all right,
# all wrong): 0; group 2: mean .25, std .5 → -.25/.5001 = -.49990 and .75/.5001 = 1.49970.
BINARY = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
BINARY_STD = [0.86588, -0.86588, -0.86588, 0.86588, 0, 0, 0, 0, -0.49990, -0.49990, -0.49990, 1.49970, 0, 0, 0, 0]
FRACTIONAL = [0.2, 0.9, 0.5, 0.4, 0.0, 0.3, 0.3, 1.0, 0.7, 0.1, 0.6, 0.6, 0.25, 0.5, 0.75, 1.0]
REWARDS = {"values": BINARY}  # what the stub reward function returns, row by row


def fixed_reward(prompts, completions, **kwargs):
    """TRL reward function returning the test's rewards in row order (prompt-major, G rows per prompt)."""
    return list(REWARDS["values"][: len(prompts)])


@pytest.fixture(scope="module")
def trl_trainer(tmp_path_factory):
    from trl import GRPOConfig, GRPOTrainer

    from fr3e.tasks.arithmetic import make_split
    from fr3e.tasks.model import build_tiny

    model, tokenizer = build_tiny(seed=0, hidden_size=32, num_layers=1, num_heads=2)
    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("trl")), loss_type="dapo", epsilon=EPS_LOW, epsilon_high=EPS_HIGH,
        beta=0.0, num_generations=G, per_device_train_batch_size=P * G, max_completion_length=T_MAX,
        use_vllm=False, use_cpu=True, report_to=[], bf16=False, logging_strategy="no", save_strategy="no",
        temperature=1.0, top_p=1.0, scale_rewards="group", seed=0)
    trainer = GRPOTrainer(model=model, reward_funcs=fixed_reward, args=args,
                          train_dataset=make_split("train", P), processing_class=tokenizer)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); _compute_loss reads it
    return trainer


def trl_batch(trainer, rewards, scale="group", seed=0):
    """One TRL generation batch (its own generate, rewards, advantages): P prompts × G completions."""
    REWARDS["values"] = rewards
    trainer.scale_rewards = scale
    trainer.model.train()  # TRL reads the mode from model.training ("eval" uses num_generations_eval)
    rows = [{"prompt": p} for p in trainer.train_dataset["prompt"] for _ in range(G)]
    torch.manual_seed(seed)
    return trainer._generate_and_score_completions(rows)


# ------------------------------------------------------------------------------------------ advantages
@pytest.mark.parametrize("rewards", [BINARY, FRACTIONAL], ids=["binary", "fractional"])
def test_group_advantages_match_trl(trl_trainer, rewards):
    r = torch.tensor(rewards).view(P, G)  # (P, G)
    keys = [i // G for i in range(P * G)]
    trl_std = trl_batch(trl_trainer, rewards, "group")["advantages"]  # (P·G,)
    torch.testing.assert_close(group_advantages(r, "std").view(-1), trl_std, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(keyed_advantages(r.view(-1), keys, scale="std"), trl_std, rtol=1e-6, atol=1e-6)
    trl_none = trl_batch(trl_trainer, rewards, "none")["advantages"]
    torch.testing.assert_close(group_advantages(r, "none").view(-1), trl_none, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(keyed_advantages(r.view(-1), keys, scale="none"), trl_none, rtol=1e-6, atol=1e-6)
    if rewards is BINARY:  # hand-computed values in the header comment
        torch.testing.assert_close(trl_std, torch.tensor(BINARY_STD), rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------------------------ loss
def ours_layout(batch):
    """TRL's left-padded prompt / right-padded completion tensors → our right-padded rows and target mask.

    returns ids (B, L), mask (B, L), tmask (B, L-1) bool over completion targets, and the (row, position)
    index of every completion token in our layout and in TRL's (B, C) completion layout.
    """
    prompts = [p[m.bool()].tolist() for p, m in zip(batch["prompt_ids"], batch["prompt_mask"])]
    comps = [c[m.bool()].tolist() for c, m in zip(batch["completion_ids"], batch["completion_mask"])]
    ids, mask = pad_right([p + c for p, c in zip(prompts, comps)], pad=0)
    tmask = torch.zeros(ids.shape[0], ids.shape[1] - 1, dtype=torch.bool)  # (B, L-1)
    for b, (p, c) in enumerate(zip(prompts, comps)):
        tmask[b, len(p) - 1 : len(p) - 1 + len(c)] = True  # target index of completion token 0 is len(p)-1
    return ids, mask, tmask


def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def trl_loss(trainer, batch, rows=None, ga=1, spg=1):
    """TRL's `_compute_loss` on the rows `rows` of `batch`, with its accumulation settings."""
    trainer.current_gradient_accumulation_steps, trainer.args.steps_per_generation = ga, spg
    try:
        sub = {k: (v[rows] if rows is not None and torch.is_tensor(v) and v.dim() > 0 else v)
               for k, v in batch.items()}
        return trainer._compute_loss(trainer.model, sub)
    finally:
        trainer.current_gradient_accumulation_steps, trainer.args.steps_per_generation = 1, 1


@pytest.fixture(scope="module")
def loss_case(trl_trainer):
    """TRL's batch with old log-probs perturbed (seeded) so both clip bounds act; our layout of it."""
    batch = trl_batch(trl_trainer, BINARY, "group")
    model = trl_trainer.model
    ids, mask, tmask = ours_layout(batch)
    with torch.no_grad():
        logp, _ = token_logprobs(model, ids, mask)  # (B, L-1)
    gen = torch.Generator().manual_seed(0)
    old = (logp + 0.4 * torch.randn(logp.shape, generator=gen)).masked_fill(~tmask, 0.0)  # (B, L-1)
    old_trl = torch.zeros(batch["completion_ids"].shape)
    old_trl[batch["completion_mask"].bool()] = old[tmask]
    batch = {**batch, "old_per_token_logps": old_trl}
    return batch, ids, mask, tmask, old


def our_loss(model, ids, mask, tmask, old, adv, num_tokens, rows=None):
    rows = slice(None) if rows is None else rows
    logp, _ = token_logprobs(model, ids[rows], mask[rows])
    return policy_loss(logp, old[rows], adv[rows], tmask[rows], EPS_LOW, EPS_HIGH, dual_clip=0.0,
                       aggregation="token-mean", num_tokens=num_tokens)


def test_policy_loss_matches_trl_dapo(trl_trainer, loss_case):
    batch, ids, mask, tmask, old = loss_case
    model = trl_trainer.model.train()
    n_items = batch["num_items_in_batch"]
    assert int(n_items) == int(tmask.sum()) == int(batch["completion_mask"].sum())  # global completion tokens

    model.zero_grad()
    loss_trl = trl_loss(trl_trainer, batch)
    loss_trl.backward()
    g_trl = grads(model)
    model.zero_grad()
    loss, stats = our_loss(model, ids, mask, tmask, old, batch["advantages"], float(n_items))
    loss.backward()
    g_ours = grads(model)
    assert stats["clip_low"] > 0 and stats["clip_high"] > 0, "the batch must exercise both clip bounds"
    torch.testing.assert_close(loss, loss_trl, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_ours, g_trl, rtol=1e-4, atol=1e-6)


def test_policy_loss_matches_trl_in_micro_batches(trl_trainer, loss_case):
    """ga = spg = 2: TRL's normaliser is still the whole batch's tokens; the micro-batch losses sum to ours."""
    batch, ids, mask, tmask, old = loss_case
    model = trl_trainer.model.train()
    halves = [torch.arange(0, P * G // 2), torch.arange(P * G // 2, P * G)]
    total_trl = sum(trl_loss(trl_trainer, batch, h, ga=2, spg=2) for h in halves)
    total_ours = sum(our_loss(model, ids, mask, tmask, old, batch["advantages"], float(batch["num_items_in_batch"]),
                              h)[0] for h in halves)
    full, _ = our_loss(model, ids, mask, tmask, old, batch["advantages"], float(batch["num_items_in_batch"]))
    torch.testing.assert_close(total_ours, full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(total_trl, full, rtol=1e-5, atol=1e-6)


def test_several_updates_per_batch_normalise_differently(trl_trainer, loss_case):
    """spg = 2, ga = 1 (two optimizer steps per generation batch, like our updates_per_batch=2).

    TRL divides each step's token sum by N·ga/spg = N/2 (the average per step); we divide by that step's own
    token count n_k. Hence TRL_k = ours_k · n_k / (N/2), and the two differ whenever n_k ≠ N/2.
    """
    batch, ids, mask, tmask, old = loss_case
    model = trl_trainer.model.train()
    n_total = float(batch["num_items_in_batch"])
    for h in (torch.arange(0, P * G // 2), torch.arange(P * G // 2, P * G)):
        n_k = float(tmask[h].sum())
        ours_k, _ = our_loss(model, ids, mask, tmask, old, batch["advantages"], n_k, h)
        trl_k = trl_loss(trl_trainer, batch, h, ga=1, spg=2)
        torch.testing.assert_close(trl_k, ours_k * n_k / (n_total / 2), rtol=1e-5, atol=1e-6)


def test_dual_clip_is_the_only_difference_at_the_recipe_setting(trl_trainer, loss_case):
    """Our recipes use dual clip c = 3, which TRL lacks: where A < 0 and ρ > c our token loss is capped at -c·A,
    TRL's stays -A·ρ. So ours = TRL - Σ_{A<0, ρ>c} (-A)(ρ - c) / N, and nothing else changes."""
    batch, ids, mask, tmask, old = loss_case
    model = trl_trainer.model.train()
    adv = batch["advantages"]
    old = (old - 1.0 * (adv < 0).float()[:, None]).masked_fill(~tmask, 0.0)  # ratios ×e on negative rows
    old_trl = torch.zeros(batch["completion_ids"].shape)
    old_trl[batch["completion_mask"].bool()] = old[tmask]
    n_items = float(batch["num_items_in_batch"])
    with torch.no_grad():
        loss_trl = trl_loss(trl_trainer, {**batch, "old_per_token_logps": old_trl})
        logp, _ = token_logprobs(model, ids, mask)
        ours, stats = policy_loss(logp, old, adv, tmask, EPS_LOW, EPS_HIGH, dual_clip=3.0, num_tokens=n_items)
    ratio = torch.exp(logp - old)
    hit = tmask & (adv[:, None] < 0) & (ratio > 3.0)  # (B, L-1)
    assert stats["dual_clip"] == hit.sum() > 0, "the batch must exercise the dual clip"
    gap = ((-adv[:, None]) * (ratio - 3.0))[hit].sum() / n_items
    torch.testing.assert_close(ours, loss_trl - gap, rtol=1e-5, atol=1e-6)
