"""A damaged file of a run directory (truncated, not JSON, binary) ends in one line naming the file and what to
do, never a traceback: the JSON readers, every log the study reads, and the trainer's reuse and resume."""

import json
import shutil
from pathlib import Path

import pytest

from fr3e.study import loaders
from fr3e.utils.errors import UserError
from fr3e.utils.io import DamagedFile, read_json, read_jsonl

DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "binary": lambda text: "\x00\xff\xfe garbage",
    "not json": lambda text: "this is not json\n" + text,
}


def _damage(path: Path, kind: str) -> None:
    text = path.read_text()
    if kind == "binary":
        path.write_bytes(b"\x00\xff\xfe\x80 garbage\n" + text.encode())
    else:
        path.write_text(DAMAGE[kind](text))


def test_readers_name_the_file_and_the_fault(tmp_path):
    good = tmp_path / "a.json"
    good.write_text(json.dumps({"x": 1}))
    assert read_json(good) == {"x": 1}
    for kind, expected in (("truncated", "not valid JSON"), ("binary", "not text: byte 1"), ("not json", "line 1")):
        bad = tmp_path / f"{kind.replace(' ', '_')}.json"
        bad.write_text(json.dumps({"x": list(range(20))}))
        _damage(bad, kind)
        with pytest.raises(DamagedFile, match=f"{bad.name} is damaged .*{expected}.*move the run directory away"):
            read_json(bad)
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(DamagedFile, match="empty"):
        read_json(tmp_path / "empty.json")
    log = tmp_path / "m.jsonl"
    log.write_text('{"step": 1}\n{"step": 2\n{"step": 3}\n')
    with pytest.raises(DamagedFile, match="m.jsonl is damaged \\(line 2 of 3 is not valid JSON"):
        read_jsonl(log)
    log.write_text('{"step": 1}\n{"step": 2')  # a torn last line: a run killed mid-write, not damage
    assert read_jsonl(log) == [{"step": 1}]
    assert issubclass(DamagedFile, UserError)


@pytest.mark.parametrize("name", ["config.json", "metrics.jsonl", "eval.jsonl", "probe.jsonl", "samples.jsonl"])
@pytest.mark.parametrize("kind", ["binary", "not json"])
def test_the_study_reads_a_damaged_run_as_one_error(small_reference_run, tmp_path, name, kind):
    run = tmp_path / "run"
    shutil.copytree(small_reference_run, run, ignore=shutil.ignore_patterns("checkpoints", "model"))
    _damage(run / name, kind)
    readers = {"config.json": loaders.run_meta, "metrics.jsonl": lambda d: loaders.load_metrics([d]),
               "eval.jsonl": lambda d: loaders.load_evals([d]), "probe.jsonl": lambda d: loaders.load_probe([d]),
               "samples.jsonl": lambda d: loaders.load_samples(d)}
    with pytest.raises(DamagedFile, match=f"{name} is damaged"):
        readers[name](run)


@pytest.mark.slow
def test_the_trainer_refuses_a_damaged_run_with_one_line(small_reference_run, tmp_path):
    """Reusing a finished run whose config.json is damaged, and resuming one whose metrics log is damaged."""
    from test_trainer import CACHE, small_config

    from fr3e.training.trainer import train

    finished = tmp_path / "finished"
    shutil.copytree(small_reference_run, finished)
    _damage(finished / "config.json", "truncated")
    with pytest.raises(UserError, match="config.json is damaged"):
        train(small_config(), finished, progress=False, cache_dir=CACHE)
    resumed = tmp_path / "resumed"
    shutil.copytree(small_reference_run, resumed)
    (resumed / "DONE").unlink()
    shutil.rmtree(resumed / "model")
    _damage(resumed / "metrics.jsonl", "not json")
    with pytest.raises(UserError, match="metrics.jsonl is damaged"):
        train(small_config(), resumed, progress=False, cache_dir=CACHE)
