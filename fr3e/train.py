"""Command line: train one FR3E or GRPO++ run.

    python -m fr3e.train --config reproduce/configs/tiny-fr3e.yaml [--set key=value ...] [--run-dir DIR]
    accelerate launch --multi_gpu --num_processes 2 -m fr3e.train --config ...    (same semantics)

A finished run directory is reused, an interrupted one resumes from its last checkpoint, and a directory
holding a different config is refused with the list of fields that differ.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from fr3e.config import ConfigError, TrainConfig, from_dict, load_config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fr3e.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML recipe, e.g. reproduce/configs/tiny-fr3e.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (dotted), e.g. --set fr3e.num_anchors=2; repeatable")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=PATH",
                        help="use a local file for a hub dataset, e.g. --data gsm8k=/data/gsm8k.jsonl; repeatable")
    parser.add_argument("--run-dir", default=None, help="run directory (default runs/<name>)")
    parser.add_argument("--cache-dir", default="runs/cache", help="where warm-started tiny base models are cached")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        from fr3e.data import DataError, parse_data_overrides

        local = {k: str(v) for k, v in parse_data_overrides(args.data).items()}
        config = load_config(args.config, args.overrides)
        if local:
            config = from_dict(TrainConfig, {**config.to_dict(),
                                             "data": {**config.to_dict()["data"], "local_files": local}})
    except (ConfigError, DataError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    from fr3e.trainer import TrainingError, train

    try:
        path = train(config, args.run_dir, progress=not args.no_progress, cache_dir=args.cache_dir)
    except (ConfigError, TrainingError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
