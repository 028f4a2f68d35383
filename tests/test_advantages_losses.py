import random

import pytest
import torch
from torch.testing import assert_close

from fr3e.method.advantages import group_advantages, keyed_advantages
from fr3e.method.branching import SHARED, StateKey
from fr3e.method.losses import policy_loss
from fr3e.method.modulation import modulation_by_key
from fr3e.method.sampling import group_outcomes, select_base_trajectories, signal_groups


def test_group_advantages_by_hand():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    # mean .5 -> ±.5; all-right group -> 0
    assert_close(group_advantages(r), torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.0] * 4]))
    # std (unbiased) of [1,0,0,1] = sqrt(1/3) = .57735 -> .5/.57745 = .86588
    s = group_advantages(r, "std")
    assert_close(s[0], torch.tensor([0.86588, -0.86588, -0.86588, 0.86588]), atol=1e-4, rtol=0)
    assert torch.all(s[1] == 0)


def test_keyed_matches_grouped_and_applies_alpha():
    r = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    keys = ["a"] * 3 + ["b"] * 3
    for scale in ("none", "std"):
        got = keyed_advantages(r.flatten(), keys, None, scale)
        assert_close(got, group_advantages(r, scale).flatten())
    # α(a)=2, α(b)=.5: A = α·Â; group a Â = [2/3, -1/3, -1/3] -> [4/3, -2/3, -2/3]
    got = keyed_advantages(r.flatten(), keys, {"a": 2.0, "b": 0.5})
    assert_close(got[:3], torch.tensor([4 / 3, -2 / 3, -2 / 3]))
    with pytest.raises(KeyError):
        keyed_advantages(r.flatten(), keys, {"a": 1.0})


@pytest.mark.parametrize("seed", range(3))
def test_shuffle_invariance(seed):
    rng = random.Random(seed)
    keys = [StateKey(p, t, j) for p in range(3) for t, j in [(SHARED, 0), (1, 1), (1, 2)] for _ in range(4)]
    rewards = torch.tensor([float(rng.random() < 0.5) for _ in keys])
    alpha = {k: rng.uniform(0.3, 3.0) for k in set(keys)}
    base = keyed_advantages(rewards, keys, alpha, "std")
    perm = list(range(len(keys)))
    rng.shuffle(perm)
    shuffled = keyed_advantages(rewards[perm], [keys[i] for i in perm], alpha, "std")
    assert_close(shuffled, base[perm])


def test_base_selection_and_signal():
    assert select_base_trajectories([0, 1, 1, 0], 1, 1) == [0, 1]
    assert select_base_trajectories([1, 1, 1, 1], 1, 1) == [0]
    assert select_base_trajectories([0, 0, 1, 0], 2, 1) == [0, 2]
    r = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
    assert signal_groups(r).tolist() == [False, False, True]
    assert group_outcomes(r) == ["all_right", "all_wrong", "mixed"]


def reference_loss(logp, old, adv, mask, eps_low, eps_high, c, agg):
    """Per-token loop written from the equations in fr3e/method/losses.py."""
    total, n_tok, per_seq = 0.0, 0, []
    for i in range(logp.shape[0]):
        s, n = 0.0, 0
        for t in range(logp.shape[1]):
            if not mask[i, t]:
                continue
            a = float(adv[i])
            rho = float(torch.exp(logp[i, t] - old[i, t]))
            lt = max(-a * rho, -a * min(max(rho, 1 - eps_low), 1 + eps_high))
            if c > 0 and a < 0:
                lt = min(lt, -c * a)
            s += lt
            n += 1
        total += s
        n_tok += n
        if n:
            per_seq.append(s / n)
    return total / max(n_tok, 1) if agg == "token-mean" else sum(per_seq) / max(len(per_seq), 1)


def test_loss_by_hand():
    # one token, A=1, ratio=exp(.5)=1.6487 > 1.28 -> clipped: loss = -1.28; clip_high counted
    logp, old = torch.tensor([[0.5]]), torch.tensor([[0.0]])
    loss, st = policy_loss(logp, old, torch.tensor([1.0]), torch.tensor([[True]]), 0.2, 0.28)
    assert_close(loss, torch.tensor(-1.28))
    assert st["clip_high"] == 1 and st["clip_low"] == 0
    # A=-1, ratio=exp(2)=7.389: PPO term = 7.389, dual clip c=3 caps it at 3
    loss, st = policy_loss(torch.tensor([[2.0]]), old, torch.tensor([-1.0]), torch.tensor([[True]]), 0.2, 0.28, 3.0)
    assert_close(loss, torch.tensor(3.0))
    assert st["dual_clip"] == 1
    # ratio 1 everywhere: loss = -mean(A) over tokens = -(2·1 + 1·(-1))/3 = -1/3
    lp = torch.zeros(2, 2)
    loss, _ = policy_loss(lp, lp, torch.tensor([1.0, -1.0]), torch.tensor([[True, True], [True, False]]))
    assert_close(loss, torch.tensor(-1 / 3))
    # seq-mean: -(1 + (-1))/2 = 0
    loss, _ = policy_loss(lp, lp, torch.tensor([1.0, -1.0]), torch.tensor([[True, True], [True, False]]),
                          aggregation="seq-mean")
    assert_close(loss, torch.tensor(0.0))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("agg", ["token-mean", "seq-mean"])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (6, 17)])
@pytest.mark.parametrize("c", [0.0, 3.0])
def test_loss_against_reference(seed, agg, shape, c):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(*shape, generator=g) * 3
    old = logp + torch.randn(*shape, generator=g) * 0.5
    adv = torch.randn(shape[0], generator=g)
    mask = torch.rand(*shape, generator=g) > 0.3
    mask[0, 0] = True
    loss, _ = policy_loss(logp, old, adv, mask, 0.2, 0.3, c, agg)
    assert_close(loss, torch.tensor(reference_loss(logp, old, adv, mask, 0.2, 0.3, c, agg)), atol=1e-5, rtol=1e-5)


def test_global_token_mean_across_micro_batches():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(6, 9, generator=g)
    old = logp + 0.1 * torch.randn(6, 9, generator=g)
    adv = torch.randn(6, generator=g)
    mask = torch.rand(6, 9, generator=g) > 0.4
    full, _ = policy_loss(logp, old, adv, mask)
    n = mask.sum().item()
    parts = [policy_loss(logp[i:i + 2], old[i:i + 2], adv[i:i + 2], mask[i:i + 2], num_tokens=n)[0] for i in (0, 2, 4)]
    assert_close(sum(parts), full)


def test_gradient_flows_only_through_masked_tokens():
    logp = torch.zeros(1, 3, requires_grad=True)
    loss, _ = policy_loss(logp, torch.zeros(1, 3), torch.tensor([1.0]), torch.tensor([[True, False, True]]))
    loss.backward()
    assert logp.grad[0, 1] == 0 and logp.grad[0, 0] != 0


def test_invariance_one_state_and_no_modulation_is_grpo_pp():
    # FR3E's bookkeeping with only S_0 per prompt and modulation "none" == GRPO++ advantages and loss.
    g = torch.Generator().manual_seed(1)
    P, G, T = 3, 4, 6
    rewards = (torch.rand(P, G, generator=g) > 0.5).float()
    grpo_adv = group_advantages(rewards, "std").flatten()  # (P·G,)
    keys = [StateKey(p, SHARED, 0) for p in range(P) for _ in range(G)]
    values = {StateKey(p, SHARED, 0): rewards[p].mean().item() for p in range(P)}
    for variant in ("none", "paper"):  # with one state, "paper" also gives α(S_0) = 1
        alpha = modulation_by_key({}, values, variant)
        fr3e_adv = keyed_advantages(rewards.flatten(), keys, alpha, "std")
        assert torch.equal(fr3e_adv, grpo_adv)
    logp = -torch.rand(P * G, T, generator=g)
    old = logp.detach() + 0.05
    mask = torch.rand(P * G, T, generator=g) > 0.2
    a, _ = policy_loss(logp, old, grpo_adv, mask, 0.2, 0.28, 3.0)
    b, _ = policy_loss(logp, old, fr3e_adv, mask, 0.2, 0.28, 3.0)
    assert torch.equal(a, b)


def test_minibatches_never_split_a_group():
    from fr3e.method.sampling import minibatches_by_group

    # 3 groups of sizes 4, 2, 2 (keys a, b, c) into 2 parts: whichever group comes first fills part 0,
    # the next goes to the emptier part; every group stays whole and all 8 rollouts are used once.
    keys = ["a", "a", "b", "a", "c", "b", "a", "c"]
    parts = minibatches_by_group(keys, 2, seed=0)
    assert sorted(i for p in parts for i in p) == list(range(8))
    for p in parts:
        for k in set(keys):
            idx = [i for i, x in enumerate(keys) if x == k]
            assert all(i in p for i in idx) or not any(i in p for i in idx)
    assert sorted(len(p) for p in parts) == [4, 4]  # balanced: a alone, b + c together
    # the advantages of every mini-batch sum to zero (group-centred rewards): the shared prefix gets no push
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    adv = rewards.clone()
    for k in set(keys):
        idx = [i for i, x in enumerate(keys) if x == k]
        adv[idx] = rewards[idx] - rewards[idx].mean()
    for p in parts:
        assert float(adv[p].sum()) == pytest.approx(0.0)
    assert minibatches_by_group(keys, 4, seed=1).count([]) == 1  # 3 groups, 4 parts: one part empty
    with pytest.raises(ValueError):
        minibatches_by_group(keys, 0, seed=0)
