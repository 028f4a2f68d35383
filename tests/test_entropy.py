import math

import pytest
import torch
from torch.testing import assert_close

from fr3e.method.entropy import (
    newline_scores,
    random_scores,
    step_boundary_scores,
    surprisal,
    token_entropy,
    uncertainty_scores,
)


def test_uniform_and_one_hot_by_hand():
    # V = 4 equal logits -> H = log 4 = 1.3863; a near one-hot row -> H ≈ 0.
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]]])
    h = token_entropy(logits)
    assert_close(h, torch.tensor([[math.log(4), 0.0]]), atol=1e-5, rtol=0)


def test_two_way_by_hand():
    # logits (log 3, 0) -> p = (3/4, 1/4); H = -(.75 ln .75 + .25 ln .25) = .2158 + .3466 = .5623
    logits = torch.tensor([[[math.log(3.0), 0.0]]])
    assert_close(token_entropy(logits), torch.tensor([[0.5623351]]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", [(1, 1, 2), (2, 7, 11), (3, 33, 50), (4, 5, 1000)])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_categorical(shape, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, generator=g) * 3
    ref = torch.distributions.Categorical(logits=logits).entropy()
    assert_close(token_entropy(logits, chunk=4), ref, atol=1e-5, rtol=1e-5)


def test_bf16_is_computed_in_fp32():
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, 9, 3000, generator=g) * 4).to(torch.bfloat16)
    h = token_entropy(logits, chunk=2)
    assert h.dtype == torch.float32
    ref = torch.distributions.Categorical(logits=logits.float()).entropy()
    assert_close(h, ref, atol=1e-5, rtol=1e-5)


def test_chunk_size_does_not_change_result():
    logits = torch.randn(2, 17, 13)
    assert torch.equal(token_entropy(logits, chunk=1), token_entropy(logits, chunk=17))
    assert_close(token_entropy(logits, chunk=5), token_entropy(logits, chunk=64))


def test_masked_positions_are_zero():
    logits = torch.randn(2, 3, 5)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    h = token_entropy(logits, mask)
    assert h[0, 1] == 0 and torch.all(h[1] == 0) and h[0, 0] > 0


def test_rejects_wrong_rank():
    with pytest.raises(ValueError, match="B, T, V"):
        token_entropy(torch.zeros(3, 4))


def test_surprisal_by_hand():
    # log-probs ln(1/2), ln(1/4) -> surprisal .693, 1.386; masked -> 0
    lp = torch.log(torch.tensor([[0.5, 0.25, 0.9]]))
    s = surprisal(lp, torch.tensor([[True, True, False]]))
    assert_close(s, torch.tensor([[math.log(2), math.log(4), 0.0]]))


def test_newline_marks_token_after_double_newline():
    nl = 9
    ids = torch.tensor([[1, nl, nl, 5, 6, nl, 7, nl, nl]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    # "\n\n" at positions (1,2) -> boundary at 3; the final pair (7,8) has no following token.
    assert newline_scores(ids, mask, nl).tolist() == [[0, 0, 0, 1, 0, 0, 0, 0, 0]]


def test_random_scores_reproducible_and_masked():
    mask = torch.tensor([[True, True, False]])
    a = random_scores(mask, torch.Generator().manual_seed(3))
    b = random_scores(mask, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a[0, 2] == 0


def test_dispatch_requires_inputs():
    mask = torch.ones(1, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="entropies"):
        uncertainty_scores("entropy", mask=mask)
    with pytest.raises(ValueError, match="unknown scorer"):
        uncertainty_scores("vibes", mask=mask)
    e = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.equal(uncertainty_scores("entropy", mask=mask, entropies=e), e)


def test_step_boundaries_follow_the_task_delimiter():
    nl = 9
    # the tiny world writes one "\n" per step: a b \n c d \n e \n  -> steps start at 3 and 6; the final
    # "\n" ends the response and starts nothing
    ids = torch.tensor([[1, 2, nl, 3, 4, nl, 5, nl]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    assert step_boundary_scores(ids, mask, [nl]).tolist() == [[0, 0, 0, 1, 0, 0, 1, 0]]
    # a two-token delimiter: only the pair counts; the old "\n\n" scorer finds nothing in this response
    assert step_boundary_scores(ids, mask, [nl, nl]).sum() == 0
    assert torch.equal(newline_scores(ids, mask, nl), step_boundary_scores(ids, mask, [nl, nl]))
    # masked positions never score; a delimiter longer than the response finds nothing
    half = mask.clone()
    half[0, 5:] = False
    assert step_boundary_scores(ids, half, [nl]).tolist() == [[0, 0, 0, 1, 0, 0, 0, 0]]
    assert step_boundary_scores(ids[:, :1], mask[:, :1], [nl, nl]).sum() == 0
    assert torch.equal(uncertainty_scores("newline", mask=mask, response_ids=ids, delimiter_ids=[nl]),
                       step_boundary_scores(ids, mask, [nl]))
    with pytest.raises(ValueError, match="delimiter_ids is empty"):
        step_boundary_scores(ids, mask, [])
