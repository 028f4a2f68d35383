"""The log-prob / entropy pass never holds full-vocabulary logits: a dispatch-level tracker records every tensor
the forward and backward create, on a Qwen2-layout model whose vocabulary is much wider than its hidden size
(as at 7B: 152k vs 3.6k), and the largest stays a chunk's worth, for long sequences."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import Qwen2Config, Qwen2ForCausalLM

from fr3e.training import policy


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def _model(vocab: int = 2048) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096))


def test_no_full_vocabulary_logits_in_forward_or_backward():
    model, B, L, V, chunk = _model(), 2, 512, 2048, 32
    ids = torch.randint(0, V, (B, L))
    mask = torch.ones(B, L, dtype=torch.bool)
    with LargestTensor() as tracker:
        logp, ent = policy.token_logprobs(model, ids, mask, chunk=chunk, entropy_grad=True)
        (logp.sum() + 0.01 * ent.sum()).backward()
    one_chunk = B * chunk * V
    assert tracker.largest <= 2 * one_chunk, (tracker.largest, one_chunk, B * L * V)  # full logits: 16 chunks
    with LargestTensor() as tracker:  # the old way: the model's own (B, L, V) logits
        model(input_ids=ids, attention_mask=mask.long(), use_cache=False)
    assert tracker.largest >= B * L * V


def test_the_swapped_head_gives_the_full_logits_numbers_and_gradients():
    model = _model(512)
    ids = torch.randint(0, 512, (3, 200))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 150:] = False
    logits = model(input_ids=ids, attention_mask=mask.long()).logits[:, :-1].float()
    ref_logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    ref_ent = -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1) * mask[:, 1:]
    (ref_logp.sum() + ref_ent.sum()).backward()
    ref_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    logp, ent = policy.token_logprobs(model, ids, mask, chunk=64, entropy_grad=True)
    (logp.sum() + ent.sum()).backward()
    assert torch.allclose(logp, ref_logp, atol=1e-5) and torch.allclose(ent, ref_ent, atol=1e-5)
    assert all(torch.allclose(p.grad, g, atol=1e-4) for p, g in zip(model.parameters(), ref_grads))
    assert isinstance(model.lm_head, torch.nn.Linear)  # the output layer is back after the pass
    # first: positions before it are not computed
    part, _ = policy.token_logprobs(model, ids, mask, chunk=64, first=120)
    assert torch.equal(part[:, :120], torch.zeros(3, 120)) and torch.allclose(part[:, 120:], ref_logp[:, 120:],
                                                                            atol=1e-5)


def test_the_plans_log_prob_term_is_within_15_percent_of_the_tracked_peak():
    """The plan's log-prob term (`fr3e.study.plan.logits_gb`) against PyTorch's live-tensor tracker: the peak of
    activations and temporaries of one micro-batch, forward + backward and no-grad with entropy, fp32 and bf16,
    on a model whose vocabulary dominates (as at 7B), for several rows × positions × slice shapes."""
    import pytest
    from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

    from fr3e.study.plan import logits_gb

    V = 16384
    model = _model(V)
    for dtype in (torch.float32, torch.bfloat16):
        model.to(dtype)
        for B, L, chunk in ((2, 512, 64), (1, 1024, 128)):
            ids = torch.randint(0, V, (B, L))
            mask = torch.ones(B, L, dtype=torch.bool)
            for grad in (True, False):
                tracker = MemTracker()
                tracker.track_external(model)
                with tracker:
                    if grad:
                        logp, _ = policy.token_logprobs(model, ids, mask, chunk=chunk)
                        logp.float().sum().backward()
                    else:
                        with torch.no_grad():
                            policy.token_logprobs(model, ids, mask, chunk=chunk, want_entropy=True)
                peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
                measured = sum(peak[k] for k in (_MemRefType.ACT, _MemRefType.TEMP, _MemRefType.OTH))
                planned = logits_gb(B, L, V, chunk, grad=grad) * 1e9
                assert measured == pytest.approx(planned, rel=0.15), (dtype, B, L, chunk, grad, measured, planned)
                model.zero_grad(set_to_none=True)
