"""examples/trl_grpo.py: TRL's `GRPOTrainer` trains on FR3E's continuations with FR3E's advantages.

A real `GRPOTrainer` (the example's `build_trainer`, tiny path-world model, CPU) runs two steps. A spy on its
generation-batch method keeps what TRL built from the example's `rollout_func` (advantages, padded prompt and
completion tensors, loss mask), and the example's log keeps `fr3e.explore`'s `PromptWork`s. Asserted:
- TRL hands `rollout_func` every prompt `num_generations` times in a row (the example relies on it);
- TRL's advantages (scale_rewards "none": reward − group mean) equal `fr3e.explore`'s, row by row;
- each row's prompt part is its state's prefix (prompt ⊕ response[:anchor]), its completion part the
  continuation alone, and TRL's loss mask covers exactly the continuation tokens of states that carry signal
  (none of the padding rows'), so `num_items_in_batch` is FR3E's trained-token count;
- the gradient of TRL's loss on a batch equals that of `fr3e.policy_loss` over prefix ⊕ continuation rows
  trained on the continuation tokens only (on-policy, ratio 1, as both run here).
"""

import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "trl_grpo.py"
STEPS, PROMPTS, M, K = 2, 2, 4, 1
GROUP = M * (1 + 2 * K)


def load_example():
    spec = importlib.util.spec_from_file_location("fr3e_trl_grpo_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        example = load_example()
        log, seen = [], []
        trainer = example.build_trainer(str(tmp_path_factory.mktemp("trl")), steps=STEPS, prompts=PROMPTS, m=M, k=K,
                                        seed=0, log=log)
        generate_and_score = trainer._generate_and_score_completions

        def spy(inputs):  # TRL's generation batch, before it is shuffled and split
            prompts = [x["prompt"] for x in inputs]
            out = generate_and_score(inputs)
            seen.append((prompts, out))
            return out

        trainer._generate_and_score_completions = spy
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    return example, trainer, log, seen


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def rows_of(works):
    """Per TRL row of one batch: the `Rollout` it carries, or None for a padding row."""
    rows = []
    for w in works:
        rows += list(w.rollouts) + [None] * (GROUP - len(w.rollouts))
    return rows


def signal(works):
    return {key: max(r) > min(r) for w in works for key, r in w.rewards.items()}


def test_runs_the_steps_and_prompts_arrive_repeated(run):
    _, trainer, log, seen = run
    assert trainer.state.global_step == STEPS
    assert len(log) == len(seen) == STEPS  # one generation batch per optimizer step
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in trainer.state.log_history if "loss" in h)
    for prompts, _ in seen:
        assert len(prompts) == PROMPTS * GROUP
        blocks = [prompts[i: i + GROUP] for i in range(0, len(prompts), GROUP)]
        assert all(len(set(b)) == 1 for b in blocks) and len({b[0] for b in blocks}) == PROMPTS


def test_trl_advantages_are_fr3e_advantages(run):
    _, _, log, seen = run
    nonzero = 0
    for (out, works), (_, batch) in zip(log, seen):
        expected = torch.tensor([r.advantage if r is not None else 0.0 for r in rows_of(works)])
        assert len(out["fr3e_advantage"]) == batch["advantages"].numel() == PROMPTS * GROUP
        torch.testing.assert_close(batch["advantages"], expected, rtol=0, atol=1e-6)
        nonzero += int((expected != 0).sum())
        assert any(len(w.states) > 1 for w in works), "no prompt branched: the batch would be plain GRPO"
    assert nonzero > 0, "no row carried a learning signal: the comparison would be vacuous"


def test_prefix_tokens_carry_no_loss(run):
    _, _, log, seen = run
    trained_after_anchor = 0
    for (_, works), (_, batch) in zip(log, seen):
        live = signal(works)
        loss_mask = batch["completion_mask"] * batch["tool_mask"]  # what TRL's loss and token count use
        trained_tokens = 0
        for b, r in enumerate(rows_of(works)):
            prompt_part = batch["prompt_ids"][b][batch["prompt_mask"][b].bool()].tolist()
            completion_part = batch["completion_ids"][b][batch["completion_mask"][b].bool()].tolist()
            if r is None:  # padding: no loss at all
                assert loss_mask[b].sum() == 0
                continue
            assert prompt_part == r.prefix_ids and completion_part == r.completion_ids
            n = len(r.completion_ids) if live[r.key] else 0
            assert loss_mask[b].sum() == n and bool(loss_mask[b, :n].all())
            trained_tokens += n
            trained_after_anchor += int(n > 0 and len(r.prefix_ids) > r.prompt_len)
        assert int(batch["num_items_in_batch"]) == trained_tokens
    assert trained_after_anchor > 0, "no trained continuation from a state S_j, j >= 1"


def test_trl_loss_gradient_equals_fr3e_policy_loss(run):
    import fr3e
    from fr3e.training.policy import pad_right, token_logprobs

    _, trainer, log, seen = run
    (_, works), (_, batch) = log[-1], seen[-1]
    model = trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    torch.set_num_threads(1)
    model.zero_grad()
    trainer._compute_loss(model, batch).backward()
    g_trl = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    live = signal(works)
    rollouts = [r for w in works for r in w.rollouts]
    ids, mask = pad_right([r.prefix_ids + r.completion_ids for r in rollouts], 0)
    trained = torch.zeros(ids.shape[0], ids.shape[1] - 1, dtype=torch.bool)  # (B, L-1) targets
    for b, r in enumerate(rollouts):
        if live[r.key]:
            trained[b, len(r.prefix_ids) - 1: len(r.prefix_ids) - 1 + len(r.completion_ids)] = True
    model.zero_grad()
    logp, _ = token_logprobs(model, ids, mask)
    loss, _ = fr3e.policy_loss(logp, logp.detach(), torch.tensor([r.advantage for r in rollouts]), trained,
                               0.2, 0.28, dual_clip=0.0, aggregation="token-mean", num_tokens=float(trained.sum()))
    loss.backward()
    g_ours = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert g_ours.abs().max() > 0
    torch.testing.assert_close(g_ours, g_trl, rtol=1e-4, atol=1e-6)
