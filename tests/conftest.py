"""Shared pytest fixtures.

Tiny-world fixtures (used by test_engine_hf.py and test_evaluate.py): a small character-level model
briefly fine-tuned on the arithmetic task, so that its greedy outputs are peaked (no near-ties) and end
with EOS. Built once per session (~5 s on 2 cores), never cached on disk.
"""

import pytest

QUICK_SFT = dict(steps=80, batch_size=32, lr=1e-2, warmup_steps=5, hidden_size=64, num_layers=2, num_heads=4,
                 intermediate_size=128)


@pytest.fixture
def cpu_threads():
    """Torch CPU threads as the warm start picks them (1 on a busy machine, where 2 contending OpenMP threads
    ran ~8x slower), restored afterwards."""
    import torch

    from fr3e.tasks.warm_start import training_threads

    before = torch.get_num_threads()
    torch.set_num_threads(training_threads())
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_sft():
    """(model, tokenizer): a 2-layer h64 Qwen3 decoder after 80 SFT steps on the arithmetic train split."""
    import torch

    from fr3e.tasks.warm_start import WarmStartConfig, train_sft, training_threads

    threads = torch.get_num_threads()
    torch.set_num_threads(training_threads())  # 1 thread when the machine is busy (much faster there)
    try:
        model, tokenizer, _ = train_sft(WarmStartConfig(**QUICK_SFT), seed=0, progress=False)
    finally:
        torch.set_num_threads(threads)
    return model.eval(), tokenizer


@pytest.fixture(scope="session")
def tiny_sft_dir(tiny_sft, tmp_path_factory):
    """The `tiny_sft` model saved as a model directory (tokenizer beside it)."""
    from fr3e.tasks.model import save_tiny

    return save_tiny(*tiny_sft, tmp_path_factory.mktemp("tiny_sft"))
