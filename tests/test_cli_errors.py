"""Every command line turns a user error into one line on stderr, exit status 2, no traceback (fr3e.cli.common).

Each case runs the real entry point (`fr3e.cli.<command>.main` in this process, or `python -m` in a subprocess;
`reproduce/bench.py` as a script) and checks the status and the message: what is wrong and what to do. The hub is
made unreachable by pointing HF_ENDPOINT at a closed local port and HF_HUB_CACHE at an empty folder, so the cases
behave the same with or without a network. None of them trains or evaluates.
"""

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fr3e.cli.common import run_cli, user_message
from fr3e.data.hub import resolve_model
from fr3e.training.config import ConfigError, load_config
from fr3e.training.runlog import RunDir
from fr3e.utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
TINY = "reproduce/configs/tiny-fr3e.yaml"
PAPER = "reproduce/configs/table1/qwen2.5-7b-fr3e.yaml"
UNREADABLE = "/sys/fr3e-cannot-write"  # not writable, even for root


def run(*args: str, env: dict | None = None, timeout: float = 120,
        process: bool = False) -> subprocess.CompletedProcess:
    """One command line (`-m module ...` or a script path) in the repository root, 1 torch thread.

    A `-m fr3e.cli.<command>` case without its own environment runs in this process (the same `main(argv)`
    that `python -m` calls, stdout and stderr captured, `SystemExit` read as the status): the interpreter and
    torch imports cost 2-4 s a case otherwise. Cases that set the environment (the hub is read at import),
    `--debug` and `process=True` run as a real subprocess, so every entry point is also checked end to end."""
    if env is None and not process and args[0] == "-m" and args[1].startswith("fr3e.cli.") and "--debug" not in args:
        return run_in_process(args[1], list(args[2:]))
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "FR3E_DEBUG": "", **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=full_env)


def run_in_process(module: str, argv: list[str]) -> subprocess.CompletedProcess:
    import contextlib
    import importlib
    import io

    main = importlib.import_module(module).main
    out, err = io.StringIO(), io.StringIO()
    cwd, debug = os.getcwd(), os.environ.pop("FR3E_DEBUG", None)
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(argv)
            except SystemExit as exc:  # argparse
                status = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(cwd)
        if debug is not None:
            os.environ["FR3E_DEBUG"] = debug
    return subprocess.CompletedProcess(["-m", module, *argv], status, out.getvalue(), err.getvalue())


def offline_env(tmp_path: Path) -> dict:
    """No hub: a closed port answers at once (connection refused) and the model cache is empty."""
    return {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path / "hub"),
            "HF_DATASETS_CACHE": str(tmp_path / "datasets"), "HF_HUB_OFFLINE": "", "TRANSFORMERS_OFFLINE": "",
            "HF_DATASETS_OFFLINE": ""}


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Status 2, no traceback, exactly one `error:` line holding every fragment; returns that line."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Broken inputs: YAML syntax errors, a model directory without weights, a half-made run directory."""
    d = tmp_path_factory.mktemp("cli")
    (d / "indent.yaml").write_text("name: x\nsteps: 3\n  method: fr3e\n")  # line 3: a stray indent
    (d / "unclosed.yaml").write_text("name: x\nmodel: {base: [\n")
    (d / "no-weights").mkdir()
    (d / "no-weights" / "config.json").write_text('{"model_type": "qwen2"}')
    run_dir = d / "unfinished-run"  # what a start that failed before step 1 used to leave
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(load_config(ROOT / TINY).to_dict()))
    (run_dir / "env.json").write_text("{}")
    (d / "a-file").write_text("")
    return d


# ---------------------------------------------------------------------------------------------- fr3e.cli.train
def test_train_missing_config():
    assert_user_error(run("-m", "fr3e.cli.train", "--config", "reproduce/configs/tiny.yaml", process=True),
                      "config file reproduce/configs/tiny.yaml does not exist", "reproduce/configs/")


def test_train_yaml_syntax_error_is_one_line_with_its_position(files):
    line = assert_user_error(run("-m", "fr3e.cli.train", "--config", str(files / "indent.yaml")),
                             "indent.yaml: YAML syntax error at line 3, column 9", "mapping values are not allowed",
                             "Fix that line")
    assert len(run("-m", "fr3e.cli.train", "--config", str(files / "indent.yaml")).stderr.splitlines()) == 1, line
    assert_user_error(run("-m", "fr3e.cli.train", "--config", str(files / "unclosed.yaml")),
                      "YAML syntax error at line 3, column 1")


def test_train_config_is_a_directory():
    assert_user_error(run("-m", "fr3e.cli.train", "--config", "reproduce/configs"),
                      "config file reproduce/configs cannot be read", "pass a YAML recipe")


@pytest.mark.parametrize("override, fragments", [
    ("steps=0", ["steps=0: train for at least 1 step."]),
    ("fr3e.num_anchor=2", ["unknown config key", "Did you mean 'num_anchors'?"]),
    ("optim.lr=[", ["override optim.lr: '[' is not valid YAML"]),
    ("model.base=genral", ["unknown model 'genral'. Did you mean 'general'?", "a run directory (its model/)"]),
    ("model.base=Qwen/Qwen2.5-7B", ["the tiny profile starts from 'general', 'math'", "paper recipe"]),
    ("model.base=./runs/no-such-run", ["model directory runs/no-such-run does not exist"]),
    ("rollout.engine=vllm", ["rollout.engine=vllm needs", "--set rollout.engine=hf"]),
    ("data.train=gsm8k", ["data.train='gsm8k': use 'tiny/train' (embedded task) or 'paper/train'"]),
])
def test_train_bad_values_and_unknown_names(override, fragments):
    if override == "rollout.engine=vllm":
        pytest.importorskip("torch")
        import importlib.util

        import torch
        if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available():
            pytest.skip("vLLM and a GPU are here: the option is valid")
    assert_user_error(run("-m", "fr3e.cli.train", "--config", TINY, "--set", override), *fragments)


def test_train_model_directory_without_weights(files):
    assert_user_error(run("-m", "fr3e.cli.train", "--config", TINY, "--set", f"model.base={files / 'no-weights'}"),
                      "has a config.json but no weights", "Download or save it again")


def test_train_tiny_model_directory_without_tokenizer(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen3"}')
    (model / "model.safetensors").write_bytes(b"")
    assert_user_error(run("-m", "fr3e.cli.train", "--config", TINY, "--set", f"model.base={model}"),
                      "has no tokenizer.json beside the model", "'general' / 'math'")


def test_train_data_file_errors():
    assert_user_error(run("-m", "fr3e.cli.train", "--config", TINY, "--data", "gsm9k=/tmp/x.jsonl"),
                      "unknown dataset 'gsm9k'. Did you mean 'gsm8k'?")
    assert_user_error(run("-m", "fr3e.cli.train", "--config", TINY, "--data", "gsm8k=/no/such/gsm8k.jsonl"),
                      "data file /no/such/gsm8k.jsonl (--data gsm8k=...) does not exist")


def test_train_unwritable_run_directory(files):
    assert_user_error(run("-m", "fr3e.cli.train", "--config", TINY, "--run-dir", f"{UNREADABLE}/run"),
                      f"cannot write the run directory {UNREADABLE}/run", "Pass --run-dir a directory you can write")
    assert_user_error(run("-m", "fr3e.cli.train", "--config", TINY, "--run-dir", str(files / "a-file" / "run")),
                      "is a file", "Pass --run-dir a directory path")


def test_paper_recipe_without_hub_fails_in_seconds_and_leaves_nothing(tmp_path):
    run_dir = tmp_path / "paper-run"
    start = time.perf_counter()
    proc = run("-m", "fr3e.cli.train", "--config", PAPER, "--run-dir", str(run_dir), env=offline_env(tmp_path))
    seconds = time.perf_counter() - start
    assert_user_error(proc, "model 'Qwen/Qwen2.5-7B' is not in the local Hugging Face cache",
                      "http://127.0.0.1:9 cannot be reached", "--set model.base=DIR")
    assert seconds < 20, seconds  # transformers' own retries took ~50 s
    assert not run_dir.exists()


def test_paper_benchmark_without_hub_fails_at_start_naming_data_flag(files, tmp_path):
    """A local model, no hub: a Table 1 benchmark neither cached nor given with --data fails before training."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen2"}')
    (model / "model.safetensors").write_bytes(b"")  # never loaded: the data check comes first
    run_dir = tmp_path / "paper-run"
    proc = run("-m", "fr3e.cli.train", "--config", PAPER, "--run-dir", str(run_dir), "--set", f"model.base={model}",
               "--set", "rollout.engine=hf", env=offline_env(tmp_path))
    assert_user_error(proc, "could not load dataset 'aime24'", "HuggingFaceH4/aime_2024",
                      "not in the local cache and http://127.0.0.1:9 cannot be reached",
                      "--data aime24=/path/to/aime24.jsonl")
    assert not run_dir.exists()


def test_hub_offline_setting_is_named(tmp_path):
    proc = run("-m", "fr3e.cli.train", "--config", PAPER, "--run-dir", str(tmp_path / "r"),
               env={**offline_env(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert_user_error(proc, "HF_HUB_OFFLINE is set", "huggingface-cli download Qwen/Qwen2.5-7B")


def test_debug_shows_the_traceback(files):
    proc = run("-m", "fr3e.cli.train", "--config", str(files / "indent.yaml"), "--debug")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


# ------------------------------------------------------------------------------------------- fr3e.evaluation.evaluate
@pytest.mark.parametrize("model, fragments", [
    ("/no/such/model", ["model directory /no/such/model does not exist", "'general' or 'math'"]),
    ("genral", ["unknown model 'genral'. Did you mean 'general'?"]),
])
def test_evaluate_unknown_model(model, fragments):
    assert_user_error(run("-m", "fr3e.cli.evaluate", "--model", model), *fragments)


def test_evaluate_run_directory_without_final_model(files):
    assert_user_error(run("-m", "fr3e.cli.evaluate", "--model", str(files / "unfinished-run")),
                      "has no final model yet", "Finish the run")


def test_evaluate_hub_model_unreachable(tmp_path):
    assert_user_error(run("-m", "fr3e.cli.evaluate", "--model", "Qwen/Qwen2.5-7B", env=offline_env(tmp_path)),
                      "model 'Qwen/Qwen2.5-7B' is not in the local Hugging Face cache", "--model DIR")


def test_evaluate_bad_arguments(files):
    assert_user_error(run("-m", "fr3e.cli.evaluate", "--model", "general", "--benchmarks", "eazy"),
                      "unknown benchmark 'eazy'. Did you mean 'easy'?")
    assert_user_error(run("-m", "fr3e.cli.evaluate", "--model", "general", "--n", "0"), "--n 0: use 1 or more")
    assert_user_error(run("-m", "fr3e.cli.evaluate", "--model", "general", "--out", f"{UNREADABLE}/r.json"),
                      "cannot write the output directory", "--out")


@pytest.mark.slow
def test_evaluate_hub_benchmark_unreachable_names_data_flag(tmp_path):
    """Loads the 'general' warm start (trained on first use: 1-3 min), then fails on the benchmark."""
    proc = run("-m", "fr3e.cli.evaluate", "--model", "general", "--benchmarks", "gsm8k", env=offline_env(tmp_path),
               timeout=600)
    assert_user_error(proc, "could not load dataset 'gsm8k'", "openai/gsm8k",
                      "--data gsm8k=/path/to/gsm8k.jsonl")


@pytest.mark.slow
def test_evaluate_accepts_general_by_name(tmp_path):
    """`--model general`: the name fr3e.cli.train accepts (warm start trained on first use: 1-3 min)."""
    out = tmp_path / "report.json"
    proc = run("-m", "fr3e.cli.evaluate", "--model", "general", "--benchmarks", "easy", "--n", "1",
               "--num-problems", "2", "--max-new-tokens", "16", "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(out.read_text())["config"]["num_problems"] == {"easy": 2}


# ----------------------------------------------------------------------------------------- other commands
@pytest.mark.parametrize("args, fragments", [
    (["-m", "fr3e.cli.plan", "--config-dir", "/no/such/dir"], ["no *.yaml recipes in /no/such/dir"]),
    (["-m", "fr3e.cli.plan", "--throughput", "7b=fast"], ["--throughput '7b=fast'", "e.g. --throughput 7b=3363"]),
    (["-m", "fr3e.cli.plan", "--mfu", "3"], ["--mfu 3.0: a utilisation is a fraction in (0, 1]"]),
    (["-m", "fr3e.cli.reproduce", "--profile", "tiny", "--dry-run", "fig9"], ["unknown artefact(s) ['fig9']"]),
    (["-m", "fr3e.cli.rehearsal", "--dir", f"{UNREADABLE}/r"], ["cannot write the rehearsal directory", "--dir"]),
    (["-m", "fr3e.cli.evaluate", "--model", "general", "--world", "maze"], ["--world maze: the tiny worlds are"]),
    (["-m", "fr3e.cli.smoke", "--steps", "0"], ["--steps 0: run at least 1 step"]),
    (["-m", "fr3e.cli.smoke", "--out", f"{UNREADABLE}/s"], ["cannot write the output directory", "--out"]),
    (["reproduce/bench.py", "--steps", "1"], ["--steps 1: step 1 is dropped as warm-up"]),
    (["reproduce/bench.py", "--model-dir", "/no/such/model"], ["model directory /no/such/model does not exist"]),
])
def test_other_commands(args, fragments):
    assert_user_error(run(*args), *fragments)


def test_bench_recipe_with_yaml_error(files):
    assert_user_error(run("reproduce/bench.py", "--fr3e-recipe", str(files / "indent.yaml")),
                      "YAML syntax error at line 3")


def test_paper_profile_without_gpu_is_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    line = assert_user_error(run("-m", "fr3e.cli.reproduce", "--profile", "paper", "table1"),
                             "the paper profile cannot run here; it needs: 8 CUDA GPUs", "--profile tiny")
    assert "\n" not in line


def test_smoke_vllm_without_vllm_or_gpu():
    import importlib.util

    import torch

    if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available():
        pytest.skip("vLLM and a GPU are here")
    assert_user_error(run("-m", "fr3e.cli.smoke", "--engine", "vllm"), "--engine=vllm needs", "--engine hf")


# ------------------------------------------------------------------------------- the pieces, in process
def test_resolve_model_names(tmp_path):
    model = tmp_path / "run" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "qwen3"}')
    (model / "model.safetensors").write_bytes(b"")
    (tmp_path / "run" / "config.json").write_text('{"name": "run"}')  # a run directory's TrainConfig
    assert resolve_model(str(tmp_path / "run")) == str(model)  # a run directory: its model/
    assert resolve_model(str(model)) == str(model)  # a model directory: itself
    assert resolve_model("general", tiny_names=False) == "general"
    with pytest.raises(UserError, match="unknown model 'mathh'. Did you mean 'math'"):
        resolve_model("mathh")
    with pytest.raises(UserError, match="is not a model directory"):
        resolve_model(str(tmp_path))


def test_failed_start_does_not_block_the_next(tmp_path):
    """config.json + env.json and nothing else (the start failed before step 1): a corrected start proceeds."""
    run_dir = RunDir(tmp_path / "run")
    first = load_config(ROOT / PAPER)
    run_dir.prepare(first)
    second = load_config(ROOT / PAPER, ["model.base=/models/qwen2.5-7b"])
    run_dir.prepare(second)  # no "holds a different config"
    assert run_dir.config().model.base == "/models/qwen2.5-7b"
    run_dir.metrics_file.write_text('{"step": 1}\n')  # one step done: now the run is protected
    with pytest.raises(ConfigError, match="holds a different config.*model.base"):
        run_dir.prepare(first)


def test_run_cli_maps_user_errors_and_keeps_bugs(capsys):
    def fails(exc):
        def main(argv):
            raise exc
        return main

    assert run_cli(fails(UserError("x is wrong;\n  use y")), []) == 2
    assert capsys.readouterr().err == "error: x is wrong; use y\n"  # one line, whitespace folded
    assert run_cli(fails(ConfigError("steps=0: train for at least 1 step.")), []) == 2
    with pytest.raises(UserError):
        run_cli(fails(UserError("x")), ["--debug"])
    with pytest.raises(KeyError):  # a bug keeps its traceback
        run_cli(fails(KeyError("k")), [])
    assert run_cli(lambda argv: {"report": 1}, []) == 0
    assert run_cli(lambda argv: 1, []) == 1


def test_user_message_of_write_failures():
    denied = PermissionError(errno.EACCES, "Permission denied", "/data/run/config.json")
    assert user_message(denied) == ("Permission denied: /data/run/config.json. Choose a directory you can write "
                                    "(--run-dir, --out, --cache-dir) or fix its permissions.")
    full = OSError(errno.ENOSPC, "No space left on device", "/data/run/checkpoints/step-000002")
    assert user_message(full) == ("no space left on the device writing /data/run/checkpoints/step-000002. Free some "
                                  "space and start again.")
    assert user_message(OSError(errno.EIO, "I/O error")) is None
    assert user_message(ValueError("bug")) is None
