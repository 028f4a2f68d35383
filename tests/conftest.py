"""Shared pytest fixtures.

Tiny-world fixtures (used by test_engine_hf.py and test_evaluate.py): a small character-level model
briefly fine-tuned on the arithmetic task, so that its greedy outputs are peaked (no near-ties) and end
with EOS. Built once per session (~5 s on 2 cores), never cached on disk.

`small_reference_run` (used by test_trainer.py and test_faults.py): the uninterrupted small training run that
determinism and resume tests compare against, trained once per session (~10 s), whatever the worker.
"""

import os
import sys

import pytest

QUICK_SFT = dict(steps=80, batch_size=32, lr=1e-2, warmup_steps=5, hidden_size=64, num_layers=2, num_heads=4,
                 intermediate_size=128)


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Give torch its thread count back after a test that changed it in this process (an in-process
    `fr3e.cli.evaluate` picks its own and keeps it): a test worker left on 2 threads beside another worker on
    2 cores makes every later test in it many times slower."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if before is None:  # torch imported by the test itself: its default comes from OMP_NUM_THREADS, if set
        before = int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or None
    if before and torch.get_num_threads() != before:
        torch.set_num_threads(before)


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
def small_reference_run(tmp_path_factory):
    """The uninterrupted run of test_trainer.py's `small_config()` (4 steps), trained once with 1 torch thread
    (CPU float sums depend on the thread count, so the runs compared with it train with 1 thread too).

    Read by test_trainer.py and test_faults.py, never written: tests that resume or corrupt it work on a copy.
    Under pytest-xdist the workers share one copy: the first to need it trains it, under a file lock."""
    import fcntl

    import torch
    from test_trainer import CACHE, small_config

    from fr3e.training.trainer import train

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's directory, above every worker's own
    out = root / "small-reference" / "run"
    with open(root / "small-reference.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (out / "DONE").exists():  # a run a killed worker left unfinished resumes
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                train(small_config(), out, progress=False, cache_dir=CACHE)
            finally:
                torch.set_num_threads(threads)
    return out


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
