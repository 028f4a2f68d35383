import math

import pytest
import torch
from torch.testing import assert_close

from fr3e.method.branching import SHARED, StateKey
from fr3e.method.modulation import modulation_by_key, modulation_factors
from fr3e.method.values import state_values, wilson_interval, z_for


def test_state_values_by_hand():
    r = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    assert_close(state_values(r), torch.tensor([0.75, 0.0]))
    with pytest.raises(ValueError):
        state_values(torch.zeros(3))


def test_wilson_by_hand():
    # k=8, n=16, z=1.96: p=.5, z²=3.8416, denom=1.2401, centre=.5,
    # half = 1.96*sqrt(.015625 + .0037516)/1.2401 = 1.96*.13920/1.2401 = .22001
    lo, hi = wilson_interval(torch.tensor([8.0]), 16)
    assert_close(lo, torch.tensor([0.5 - 0.22001]), atol=1e-4, rtol=0)
    assert_close(hi, torch.tensor([0.5 + 0.22001]), atol=1e-4, rtol=0)
    # k=0: the interval still has positive width and stays inside [0, 1]
    lo, hi = wilson_interval(torch.tensor([0.0]), 16)
    assert lo.item() == 0.0 and 0.15 < hi.item() < 0.25
    assert abs(z_for(0.95) - 1.959964) < 1e-4


@pytest.mark.parametrize("values,expected", [
    # authors' worked examples of the sharpened ("official") modulation
    ([0.25, 0.5, 0.75], [0.49, 0.87, 0.87]),
    ([0.9, 0.1], [0.96, 2.61]),
    ([0.5] * 5, [0.37, 1.0, 1.0, 1.0, 1.0]),
])
def test_official_worked_examples(values, expected):
    # e.g. V=[.9,.1]: δ=[.1,-.8], |δ|^1.5=[.0316,.7155], Σ=.7471, δ̃=[.0423,-.9577], α=[.959, 2.606]
    got = modulation_factors(torch.tensor(values), "official")
    assert_close(got, torch.tensor(expected), atol=0.006, rtol=0)


def test_paper_variant_by_hand():
    # V = [.5, .75, .25]: α_0 = 1, α_1 = exp(-.25) = .7788, α_2 = exp(.5) = 1.6487
    got = modulation_factors(torch.tensor([0.5, 0.75, 0.25]), "paper")
    assert_close(got, torch.tensor([1.0, math.exp(-0.25), math.exp(0.5)]))


def test_none_and_flat_chains():
    assert torch.equal(modulation_factors(torch.tensor([0.2, 0.9]), "none"), torch.ones(2))
    # official with V_0 = 1 and no change: every δ is 0 -> α = 1, no division by zero
    got = modulation_factors(torch.tensor([1.0, 1.0, 1.0]), "official")
    assert torch.equal(got, torch.ones(3))
    assert torch.equal(modulation_factors(torch.tensor([0.3, 0.3]), "paper"), torch.ones(2))
    with pytest.raises(ValueError, match="unknown modulation"):
        modulation_factors(torch.tensor([0.5]), "magic")


def test_modulation_by_key_shared_s0():
    s0 = StateKey(0, SHARED, 0)
    a1, b1 = StateKey(0, 1, 1), StateKey(0, 2, 1)
    values = {s0: 0.5, a1: 0.75, b1: 0.25}
    chains = {1: [s0, a1], 2: [s0, b1]}
    alpha = modulation_by_key(chains, values, "paper")
    # α(S_0)=1; α(a1)=exp(-.25); α(b1)=exp(.25)
    assert_close(torch.tensor([alpha[s0], alpha[a1], alpha[b1]]),
                 torch.tensor([1.0, math.exp(-0.25), math.exp(0.25)]))
    # official: chain 1 δ=[.5,.25] |δ|^1.5=[.3536,.125] δ̃_0=.7388; chain 2 δ=[.5,-.25] δ̃_0=.7388
    off = modulation_by_key(chains, values, "official")
    assert_close(torch.tensor(off[s0]), torch.tensor(math.exp(-0.7388)), atol=1e-3, rtol=0)
    # a prompt without kept trajectories keeps α(S_0)=1
    lone = StateKey(5, SHARED, 0)
    assert modulation_by_key({}, {lone: 0.3}, "official") == {lone: 1.0}
