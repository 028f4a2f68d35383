"""Command line: train one FR3E or GRPO++ run.

    python -m fr3e.cli.train --config reproduce/configs/tiny-fr3e.yaml [--set key=value ...] [--run-dir DIR]
    accelerate launch --multi_gpu --num_processes 2 -m fr3e.cli.train --config ...    (same semantics)

A finished run directory is reused, an interrupted one resumes from its last checkpoint, and a directory
holding a different config is refused with the list of fields that differ.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fr3e.cli import common as cli
from fr3e.data import hub
from fr3e.data.hub import TINY_MODELS
from fr3e.training.config import TrainConfig, from_dict, load_config
from fr3e.utils.errors import UserError


def check_start(config: TrainConfig, cache_dir: str) -> TrainConfig:
    """What can be checked in seconds before a model loads: the model name, local data files, the hub, the
    engine's device. Returns `config` with a run directory given as model.base replaced by its model/."""
    from fr3e.data.paper import BENCHMARKS, TRAIN_MIX

    if config.data.train not in ("tiny/train", "paper/train"):
        raise UserError(f"data.train={config.data.train!r}: use 'tiny/train' (embedded task) or 'paper/train' "
                        "(DeepScaleR + SimpleRL-Zoo, local files with --data).")
    base = config.model.base
    if (config.profile == "tiny" and "/" in base and not Path(base).expanduser().exists()
            and not hub.looks_like_path(base)):  # a hub id
        raise UserError(f"model.base={base!r}: the tiny profile starts from 'general', 'math', a tiny model "
                        "directory or a run directory; set one with --set model.base=... (hub ids need a paper "
                        "recipe, reproduce/configs/table1/).")
    if config.profile == "paper" and base in TINY_MODELS:
        raise UserError(f"model.base={base!r} is a tiny-profile model; the paper profile needs a hub id or a model "
                        "directory (e.g. --set model.base=Qwen/Qwen2.5-7B), or use profile: tiny.")
    resolved = hub.resolve_model(base, cache_dir=cache_dir, tiny_names=False)
    if config.profile == "tiny" and resolved not in TINY_MODELS and not (Path(resolved) / "tokenizer.json").exists():
        raise UserError(f"model.base={base!r} has no tokenizer.json beside the model; the tiny profile needs a "
                        "directory written by fr3e.cli.train (runs/<name>/model) or the warm start, or 'general' / 'math'.")
    for name, path in config.data.local_files.items():
        if not Path(path).is_file():
            raise UserError(f"data file {path} (--data {name}=...) does not exist; pass an existing .jsonl, .json or "
                            ".parquet file in the hub dataset's format.")
    needed = (list(TRAIN_MIX) if config.data.train == "paper/train" else []) + [
        b for b in config.data.eval_benchmarks if b in BENCHMARKS]
    if any(name not in config.data.local_files for name in needed) and not hub.hub_reachable():
        # Offline (the probe switched datasets to its cache): a benchmark that is neither cached nor a --data
        # file would fail at the first evaluation, hours in; load them now (small: <= 1.3k rows each).
        from fr3e.data.paper import load_rows

        for name in config.data.eval_benchmarks:
            if name in BENCHMARKS and name not in config.data.local_files:
                load_rows(name)  # DataError naming the dataset id and --data NAME=PATH
    cli.check_engine(config.rollout.engine)
    if resolved != base:
        data = config.to_dict()
        data["model"]["base"] = resolved
        config = from_dict(TrainConfig, data)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; a user error is one line on stderr and status 2 (`fr3e.cli.common.run_cli`)."""
    return cli.run_cli(_main, argv)


def _main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m fr3e.cli.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML recipe, e.g. reproduce/configs/tiny-fr3e.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (dotted), e.g. --set fr3e.num_anchors=2; repeatable")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=PATH",
                        help="use a local file for a hub dataset, e.g. --data gsm8k=/data/gsm8k.jsonl; repeatable")
    parser.add_argument("--run-dir", default=None, help="run directory (default runs/<name>)")
    parser.add_argument("--cache-dir", default="runs/cache", help="where warm-started tiny base models are cached")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    cli.add_debug_flag(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from fr3e.data.paper import parse_data_overrides

    local = {k: str(v) for k, v in parse_data_overrides(args.data).items()}
    config = load_config(args.config, args.overrides)
    if local:
        config = from_dict(TrainConfig, {**config.to_dict(),
                                         "data": {**config.to_dict()["data"], "local_files": local}})
    config = check_start(config, args.cache_dir)
    run_dir = cli.check_writable(args.run_dir or Path("runs") / config.name)
    from fr3e.training.distributed import shutdown
    from fr3e.training.trainer import TrainingError, train

    try:
        path = train(config, run_dir, progress=not args.no_progress, cache_dir=args.cache_dir)
    except TrainingError as exc:  # the run failed (not the command line): status 1, still one line
        sys.stderr.write(f"error: {exc}\n")
        return 1
    shutdown()  # every process got here: end the process group before the interpreter does
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
