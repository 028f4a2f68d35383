"""Multi-process checks of the trainer, run by tests/test_distributed.py under `accelerate launch` (2 gloo ranks).

Each check drives one trainer method with deliberately uneven data across the processes (the situations that
hung or biased multi-process runs) and records its outcome; every collective times out after a few seconds
(`distributed_timeout_s`), so a hang becomes an error here instead of a stuck test. Results go to
<out>/rank<r>.json and are asserted by the test. Not collected by pytest (no test_ prefix).

usage: accelerate launch ... tests/distributed_checks.py <out dir> <cache dir>
"""

from __future__ import annotations

import json
import math
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SIZES = ["steps=2", "checkpoint_every=1", "sample_every=0", "data.prompts_per_step=4", "data.eval_problems=3",
         "data.eval_n=2", "data.max_response_tokens=24", "grpo.max_refill_rounds=1", "optim.micro_batch_size=1",
         "optim.warmup_steps=4", "optim.lr=1e-3", "distributed_timeout_s=15", "data.eval_benchmarks=[easy,medium]"]


def rollouts_for(trainer, count: int):
    """`count` hand-made rollouts (prompt '12+3=' and a random continuation) with nonzero advantages."""
    from fr3e.method.branching import SHARED, StateKey
    from fr3e.training.rollouts import Rollout

    prompt = trainer.tokenizer("12+3=").input_ids
    gen = torch.Generator().manual_seed(7)
    out = []
    for i in range(count):
        comp = torch.randint(5, 40, (3 + i,), generator=gen).tolist()
        out.append(Rollout(StateKey(i, SHARED, 0), prompt, len(prompt), comp, [0.0] * len(comp), float(i % 2),
                           advantage=0.5 if i % 2 else -0.5))
    return out


def main(out_dir: str, cache_dir: str) -> None:
    from fr3e.training.config import load_config
    from fr3e.training.trainer import Trainer, TrainingError

    out = Path(out_dir)
    config = load_config(ROOT / "reproduce/configs/tiny-fr3e.yaml", SIZES)
    trainer = Trainer(config, out / "run", progress=False, cache_dir=cache_dir)
    rank, world = trainer.rank, trainer.world
    results: dict = {"rank": rank, "world": world, "distributed_type": str(trainer.accelerator.distributed_type),
                     "sharded": type(next(trainer.model.parameters())).__name__ == "DTensor"}

    def check(name, fn):
        t0 = time.perf_counter()
        try:
            results[name] = {"ok": True, "value": fn()}
        except Exception as exc:  # recorded, asserted by the test
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                             "trace": traceback.format_exc()[-1500:]}
        results[name]["seconds"] = round(time.perf_counter() - t0, 2)

    # Uneven data: rank 0 has 3 rows (3 micro-batches of 1), rank 1 none.
    rows = [trainer.tokenizer("12+3=15").input_ids] * (3 if rank == 0 else 0)
    check("forward_uneven", lambda: len(trainer._forward_rows(rows, want_entropy=True)))

    # Uneven update, and the metrics of every process: rank 0 trains 3 rollouts, rank 1 none.
    def update():
        stats = trainer._update(rollouts_for(trainer, 3 if rank == 0 else 0), {"time_forward": 0.0,
                                                                               "time_backward": 0.0})
        return {"entropy": stats["entropy"], "tokens": stats["tokens"], "lr": trainer.scheduler.get_last_lr()[0]}
    check("update_uneven", update)

    # Evaluation sharded over the processes (3 problems: 2 on rank 0, 1 on rank 1).
    check("evaluate", lambda: trainer.evaluate())

    # The final model is saved with every process taking part in the gather.
    def save():
        trainer.save_model()
        return sorted(p.name for p in trainer.run.model_dir.iterdir())
    check("save_model", save)

    # Uneven steps: a whole step where rank 1 scores every rollout 0.
    trainer.config.rehearsal_zero_reward_rank = 1
    check("step_zero_reward_rank", lambda: {k: v for k, v in trainer.step().items()
                                            if k in ("prompts_kept", "rollouts_trained", "entropy")})
    trainer.config.rehearsal_zero_reward_rank = -1

    # A non-finite loss on rank 0 only stops every process.
    import fr3e.training.trainer as trainer_mod

    real = trainer_mod.policy_loss

    def broken(*args, **kwargs):
        loss, stats = real(*args, **kwargs)
        return loss * float("nan"), stats

    if rank == 0:
        trainer_mod.policy_loss = broken

    def nan_update():
        try:
            trainer._update(rollouts_for(trainer, 2), {"time_forward": 0.0, "time_backward": 0.0})
        except TrainingError as exc:
            return f"TrainingError: {exc}"
        return "no error"
    check("nan_loss_one_rank", nan_update)
    trainer_mod.policy_loss = real

    results["finite"] = all(math.isfinite(v) for v in [results.get("update_uneven", {}).get("value", {})
                                                      .get("entropy", float("nan"))])
    (out / f"rank{rank}.json").write_text(json.dumps(results, indent=1, default=str))
    from fr3e.training.distributed import shutdown

    shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:3])
