"""GPU smoke path of the paper profile: the whole pipeline, a few steps, no hub.

A small random-initialised Qwen2-architecture model (the family of Table 1's models) with the embedded
character tokenizer is written to a directory, then `fr3e.training.trainer.train` runs FR3E on the tiny task with
the engine the machine supports: vLLM when it is importable and a CUDA GPU is visible, HF otherwise.
It checks plumbing (devices, dtype, engine weight sync, checkpoints, evaluation), not learning: a random
model earns no reward, so most steps have no signal.

    python -m fr3e.cli.smoke [--out runs/gpu-smoke] [--steps 3]      (make gpu-smoke)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fr3e.training.config import recipe_dir

logger = logging.getLogger(__name__)


def build_random_qwen2(path: str | Path, hidden_size: int = 256, num_layers: int = 4, seed: int = 0) -> Path:
    """Save a random Qwen2ForCausalLM with the character tokenizer to `path` (tokenizer loads with
    `fr3e.tasks.tokenizer.load_tokenizer`, never AutoTokenizer: AutoTokenizer on a qwen2 config ignores a custom tokenizer.json)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from fr3e.tasks.tokenizer import build_tokenizer

    tok = build_tokenizer()
    config = Qwen2Config(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=3 * hidden_size,
                         num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    path = Path(path)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def vllm_usable() -> bool:
    import torch

    if not torch.cuda.is_available():
        return False
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


def gpu_smoke(out: str | Path = "runs/gpu-smoke", steps: int = 3, engine: str | None = None,
              overrides: Sequence[str] = ()) -> dict:
    """Run the smoke pipeline; returns a summary (device, engine, seconds, tokens/s, metrics of the last step).

    overrides: config values (`--set` syntax) applied after the smoke's own, e.g. smaller sizes on a CPU.
    """
    import torch

    from fr3e.training.config import load_config
    from fr3e.training.trainer import train
    from fr3e.utils.io import read_jsonl

    out = Path(out)
    model_dir = out / "random-qwen2"
    if not (model_dir / "config.json").exists():
        build_random_qwen2(model_dir)
    engine = engine or ("vllm" if vllm_usable() else "hf")
    cuda = torch.cuda.is_available()
    smoke = [f"model.base={model_dir}", f"steps={steps}", f"rollout.engine={engine}", "checkpoint_every=2",
             f"model.dtype={'bfloat16' if cuda else 'float32'}", "data.prompts_per_step=8",
             "data.eval_problems=32", "data.eval_n=4", "grpo.max_refill_rounds=0", "name=gpu-smoke"]
    config = load_config(recipe_dir() / "tiny-fr3e.yaml", smoke + list(overrides))
    start = time.perf_counter()
    run = train(config, out / f"run-{engine}", progress=True)
    seconds = time.perf_counter() - start
    rows = read_jsonl(Path(run) / "metrics.jsonl")
    gen = sum(r["gen_tokens"] for r in rows)
    t_gen = sum(r["time_generate"] for r in rows)
    return {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "engine": engine, "steps": len(rows),
            "seconds": round(seconds, 1), "generated_tokens": gen,
            "generate_tokens_per_s": round(gen / t_gen, 1) if t_gen else None, "run_dir": str(run),
            "last_step": {k: rows[-1][k] for k in ("reward_all_mean", "entropy_base", "gen_tokens", "time_step")}}


def main(argv=None) -> int:
    """The command line; a user error is one line on stderr and status 2 (`fr3e.cli.common.run_cli`)."""
    from fr3e.cli.common import run_cli

    return run_cli(_main, argv)


def _main(argv) -> int:
    from fr3e.cli.common import add_debug_flag, check_engine, check_writable
    from fr3e.utils.errors import UserError

    parser = argparse.ArgumentParser(prog="python -m fr3e.cli.smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/gpu-smoke", help="output directory (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=3, help="training steps (default: %(default)s)")
    parser.add_argument("--engine", choices=("hf", "vllm"), default=None, help="default: vllm if usable, else hf")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.steps < 1:
        raise UserError(f"--steps {args.steps}: run at least 1 step (default 3).")
    check_engine(args.engine or "hf", option="--engine", fix="--engine hf")
    check_writable(args.out, what="output directory", flag="--out")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    sys.stdout.write(json.dumps(gpu_smoke(args.out, args.steps, args.engine), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
