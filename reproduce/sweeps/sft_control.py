"""Control for the RL sweeps: continue the warm start's SFT with the RL trainer's optimizer settings.

    python reproduce/sweeps/sft_control.py [--lr 3e-4] [--steps 100] [--batch 32] [--warmup 20]

Same optimizer as the RL trainer (a fresh `torch.optim.AdamW`, default betas, weight decay 0.01, grad clip
1.0, linear warm-up then constant lr), same number of optimizer steps, but the gradient is the SFT loss
on gold worked solutions of `batch` fresh training problems (`fr3e.tasks.warm_start.completion_loss`).
If this moves the model up while RL at the same lr moves it down, the optimizer, the lr and the warm
start's sharpness are not the cause: the RL gradient is. Evaluated with the sweeps' protocol (128
problems per split, n=16, T=1, top_p 0.95, the trainer's evaluation seed). 1 thread.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from first_step import load_warm_start  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="warm-start directory (default: the cached `general`)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32, help="gold solutions per optimizer step")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="write the evaluation report (JSON) here")
    args = parser.parse_args(argv)
    from fr3e.evaluation.evaluate import evaluate
    from fr3e.tasks import arithmetic
    from fr3e.tasks.warm_start import collate, completion_loss, encode_example
    from fr3e.utils.seeds import derive_seed

    path, tok, model = load_warm_start(args.model, train=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / args.warmup) if args.warmup else 1.0)
    stream = arithmetic.iter_problems("train", seed=1)  # not the warm start's own stream (seed 0)
    t0 = time.perf_counter()
    for step in range(args.steps):
        batch = [encode_example(tok, p.prompt, p.solution) for p in (next(stream) for _ in range(args.batch))]
        ids, mask, labels = collate(batch, tok.pad_token_id)
        loss = completion_loss(model(input_ids=ids, attention_mask=mask).logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 20 == 0 or step == args.steps - 1:
            sys.stdout.write(f"step {step} loss {loss.item():.4f}\n")
    seconds = time.perf_counter() - t0
    model.eval()
    report = evaluate(model, n=16, temperature=1.0, top_p=0.95, max_new_tokens=96, num_problems=128,
                      seed=derive_seed(0, "eval"), tokenizer=tok, progress=False, out=args.out)
    avg = {k: round(100 * m["avg@16"], 1) for k, m in report["benchmarks"].items()}
    sys.stdout.write(f"SFT lr {args.lr:g}, {args.steps} steps x {args.batch}: avg@16 {avg}, mean "
                     f"{sum(avg.values()) / len(avg):.1f} ({seconds:.0f} s training)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
