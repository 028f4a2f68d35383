"""Packaging: `python -m build` makes an sdist and a wheel; the wheel installs into a fresh virtual environment
and its `fr3e` console script runs there, outside the checkout.

To stay within seconds, the fresh environment reuses this environment's installed dependencies (torch,
transformers, ...) through a .pth file instead of downloading them, and the wheel is installed with
`--no-deps` (and the torch constraint): what is installed and run is the built wheel, not this checkout.
"""

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(cmd, cwd, timeout=60):
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return res


def _source_tree(dest: Path) -> Path:
    """A copy of the files a clone would have (tracked, plus new ones not ignored), so the build sees neither
    runs/ nor .venv/ and writes nothing into the working tree."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    files = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], ROOT).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    src = _source_tree(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: build with this environment's setuptools and build (declared in the dev extra), offline.
    res = run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, src], src, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return out


def test_build_makes_an_sdist_and_a_wheel_with_the_whole_package(dist):
    sdists, wheels = list(dist.glob("fr3e-*.tar.gz")), list(dist.glob("fr3e-*-py3-none-any.whl"))
    assert len(sdists) == 1 and len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        entry_points = whl.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    ours = {str(p.relative_to(ROOT)) for p in (ROOT / "fr3e").rglob("*.py") if "__pycache__" not in p.parts}
    tracked = set(run(["git", "ls-files", "fr3e"], ROOT).stdout.split())
    assert ours & tracked <= names  # every committed module, subpackages (engines, tasks) included
    assert "fr3e = fr3e.cli.command:main" in entry_points


def test_wheel_installs_into_a_fresh_venv_and_its_command_runs(dist, tmp_path):
    venv = tmp_path / "venv"
    res = run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    assert res.returncode == 0, res.stderr
    python = venv / "bin" / "python"
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).stdout.strip()
    # Dependencies come from this environment (appended after the venv's own site-packages).
    (Path(site) / "fr3e-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(dist.glob("fr3e-*.whl"))
    res = run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index",
               "-c", ROOT / "constraints.txt", wheel], tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    where = run([python, "-c", "import fr3e; print(fr3e.__file__)"], tmp_path).stdout.strip()
    assert Path(where).is_relative_to(venv), where  # the installed wheel, not this checkout
    fr3e = venv / "bin" / "fr3e"
    res = run([fr3e, "--help"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert all(f"\n  {name} " in res.stdout for name in ("train", "evaluate", "reproduce", "plan", "smoke", "bench"))
    res = run([fr3e, "smoke", "--help"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "usage:" in res.stdout and "--steps" in res.stdout
    # The recipes ship inside the wheel: found by name, or by their checkout path, from any folder.
    code = ("import fr3e.training.config as c; from pathlib import Path; "
            "a = c.load_config('tiny-fr3e'); b = c.load_config('reproduce/configs/tiny-grpo_pp.yaml'); "
            "assert Path(c.recipe_dir()).is_relative_to(Path(c.__file__).parent.parent), c.recipe_dir(); "
            "print(a.method, b.method, sorted(p.name for p in (c.recipe_dir() / 'table1').glob('*.yaml'))[0])")
    res = run([python, "-c", code], tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["fr3e", "grpo_pp", "qwen2.5-32b-fr3e.yaml"]
    res = run([fr3e, "plan"], tmp_path)  # reads the shipped Table 1 recipes
    assert res.returncode == 0, res.stderr
    assert "qwen2.5-7b" in res.stdout.lower()
    # Notebooks are read from a checkout, which an installed wheel does not have: one line says so.
    res = run([fr3e, "reproduce"], tmp_path)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "reads notebooks from a source checkout" in res.stderr
