"""The `fr3e` command: subcommands listed with one line each, each delegating to its module's command line."""

import subprocess
import sys
from pathlib import Path

import pytest

from fr3e.cli import command
from fr3e.utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "fr3e"  # the console script pip installed beside this interpreter


def fr3e(*args, timeout=60):
    exe = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "fr3e"]
    return subprocess.run([*exe, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_subcommand_with_one_line():
    res = fr3e("--help")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    for name in ("train", "evaluate", "reproduce", "plan", "smoke", "bench"):
        listed = [line for line in lines if line.split()[:1] == [name]]
        assert len(listed) == 1 and len(listed[0].split()) > 3, name


def test_no_command_and_an_unknown_one_are_user_errors():
    res = fr3e()
    assert res.returncode == 2 and "commands:" in res.stderr
    res = fr3e("evalute")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: unknown command 'evalute'. Did you mean 'evaluate'? Commands: train, evaluate, reproduce, plan, "
        "smoke, bench, rehearsal (fr3e --help)."]


@pytest.mark.parametrize("name", ["train", "evaluate", "reproduce", "plan", "smoke"])
def test_subcommand_help_is_the_modules(name):
    # The module's own parser answers: the same text as `python -m fr3e.cli.<name> --help` (options included).
    ours = fr3e(name, "--help")
    theirs = subprocess.run([sys.executable, "-m", f"fr3e.cli.{name}", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout and "--debug" in ours.stdout


def test_bench_help_is_the_benchmarks():
    res = fr3e("bench", "--help")
    assert res.returncode == 0, res.stderr
    assert "usage: fr3e bench" in res.stdout and "--skip-trl" in res.stdout


def test_user_errors_of_a_subcommand_keep_their_line_and_status():
    res = fr3e("train", "--config", "no/such.yaml")
    assert res.returncode == 2
    assert res.stderr.startswith("error: config file no/such.yaml does not exist") and res.stderr.count("\n") == 1


def test_python_dash_m_fr3e_is_the_same_command():
    res = subprocess.run([sys.executable, "-m", "fr3e", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and res.stdout == command.usage()


def test_commands_that_read_the_checkout_say_so_outside_one(tmp_path):
    # tmp_path stands for site-packages: the package without reproduce/, notebooks/ or tests/ beside it.
    for name in ("reproduce", "rehearsal"):
        with pytest.raises(UserError, match=rf"fr3e {name} reads .* from a source checkout"):
            command.check_checkout(name, [], root=tmp_path)
        command.check_checkout(name, ["--help"], root=tmp_path)  # help works everywhere
    for name in ("train", "evaluate", "plan", "smoke"):  # the recipes ship in the wheel
        command.check_checkout(name, [], root=tmp_path)
    for name in command.CHECKOUT_FILES:
        command.check_checkout(name, [], root=ROOT)  # in this checkout nothing is missing
