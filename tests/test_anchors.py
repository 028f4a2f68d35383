import pytest
import torch

from fr3e.method.anchors import eligible_positions, select_anchors


def reference_anchors(scores, mask, k, min_gap=0):
    """Obvious loop from the rules: best score first, ties to the earliest, gap, ascending output."""
    out = []
    for row, ok in zip(scores.tolist(), mask.tolist()):
        cands = sorted((-s, t) for t, (s, o) in enumerate(zip(row, ok)) if o)
        chosen = []
        for _, t in cands:
            if len(chosen) == k:
                break
            if min_gap <= 0 or all(abs(t - c) >= min_gap for c in chosen):
                chosen.append(t)
        chosen.sort()
        out.append(chosen + [-1] * (k - len(chosen)))
    return torch.tensor(out, dtype=torch.long)


def test_top2_by_hand():
    # scores 0.1 0.9 0.3 0.8 -> top-2 positions {1, 3}, ascending
    s = torch.tensor([[0.1, 0.9, 0.3, 0.8]])
    m = torch.ones_like(s, dtype=torch.bool)
    assert select_anchors(s, m, 2).tolist() == [[1, 3]]


def test_ties_go_to_earliest():
    s = torch.tensor([[0.5, 0.5, 0.5, 0.5, 0.5]])
    m = torch.ones_like(s, dtype=torch.bool)
    assert select_anchors(s, m, 2).tolist() == [[0, 1]]


def test_position_zero_and_final_eos_excluded():
    # position 0 and the EOS at position 3 have the highest scores but are not eligible
    s = torch.tensor([[9.0, 1.0, 2.0, 8.0, 0.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    ok = eligible_positions(mask, ends_with_eos=torch.tensor([True]))
    assert ok.tolist() == [[False, True, True, False, False]]
    assert select_anchors(s, ok, 2).tolist() == [[1, 2]]
    # without EOS the last token stays eligible
    ok2 = eligible_positions(mask, ends_with_eos=torch.tensor([False]))
    assert select_anchors(s, ok2, 1).tolist() == [[3]]


def test_fewer_valid_than_k_pads_with_minus_one():
    s = torch.tensor([[0.3, 0.2, 0.1], [1.0, 2.0, 3.0]])
    m = torch.tensor([[False, True, False], [False, False, False]])
    assert select_anchors(s, m, 3).tolist() == [[1, -1, -1], [-1, -1, -1]]


def test_k_larger_than_sequence():
    s = torch.tensor([[0.3, 0.2]])
    assert select_anchors(s, torch.ones(1, 2, dtype=torch.bool), 5).tolist() == [[0, 1, -1, -1, -1]]


def test_min_gap_by_hand():
    # scores peak at 4 and 5 (adjacent); gap 2 forbids 5, so the next best far enough is 1
    s = torch.tensor([[0.0, 0.5, 0.1, 0.2, 0.9, 0.8, 0.0]])
    m = torch.ones_like(s, dtype=torch.bool)
    assert select_anchors(s, m, 2, min_gap=2).tolist() == [[1, 4]]


def test_rejects_k_zero():
    with pytest.raises(ValueError):
        select_anchors(torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool), 0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape,k,gap", [((1, 1), 1, 0), ((3, 10), 2, 0), ((5, 40), 4, 0), ((4, 30), 3, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_against_reference_loop(seed, shape, k, gap, dtype):
    g = torch.Generator().manual_seed(seed)
    # rounded scores create ties on purpose
    scores = (torch.rand(*shape, generator=g) * 4).round().to(dtype)
    mask = torch.rand(*shape, generator=g) > 0.3
    got = select_anchors(scores, mask, k, min_gap=gap)
    assert torch.equal(got, reference_anchors(scores.float(), mask, k, gap))
