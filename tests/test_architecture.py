"""The layout: docs/architecture.md lists every module, the layer rule holds, no module imports in a circle."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
LINT = Path(sys.executable).parent / "lint-imports"


def documented_files() -> set[str]:
    """Paths under fr3e/ that the tree in docs/architecture.md lists (two spaces of indent per level)."""
    text = DOC.read_text()
    block = text.split("## The tree", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    stack: list[tuple[int, str]] = []
    out = set()
    for line in block.splitlines():
        m = re.match(r"^( *)(\S+)", line)
        if not m:
            continue
        depth, name = len(m.group(1)) // 2, m.group(2)
        stack = [(d, n) for d, n in stack if d < depth]
        path = "".join(n for _, n in stack) + name
        if name.endswith("/"):
            stack.append((depth, name))
        if path.startswith("fr3e/"):
            out.add(path)
    return out


def test_the_tree_lists_every_module_and_only_modules_that_exist():
    listed = {p for p in documented_files() if p.endswith(".py")}
    actual = {str(p.relative_to(ROOT)) for p in (ROOT / "fr3e").rglob("*.py")}
    assert not actual - listed, f"modules missing from docs/architecture.md: {sorted(actual - listed)}"
    assert not listed - actual, f"docs/architecture.md lists modules that do not exist: {sorted(listed - actual)}"
    packages = {str(p.relative_to(ROOT)) + "/" for p in (ROOT / "fr3e").iterdir() if (p / "__init__.py").exists()}
    assert packages <= documented_files()


def test_no_module_over_about_600_lines_without_a_stated_reason():
    long = {str(p.relative_to(ROOT / "fr3e")): len(p.read_text().splitlines()) for p in (ROOT / "fr3e").rglob("*.py")}
    long = {k: v for k, v in long.items() if v > 650}
    reasons = DOC.read_text().split("Over ~600 lines, on purpose:", 1)[1].split("##", 1)[0]
    assert all(f"`{name}`" in reasons for name in long), f"over 650 lines with no reason in the doc: {long}"


def _graph():
    import grimp

    return grimp.build_graph("fr3e")


def test_no_import_cycle_between_modules():
    # Every import counts, also one inside a function: a cycle there is a cycle all the same.
    graph = _graph()
    modules = sorted(graph.modules)
    edges = {m: {n for n in graph.find_modules_directly_imported_by(m) if n.startswith("fr3e.") and n != "fr3e"}
             for m in modules}
    index, low, on_stack, stack, cycles, counter = {}, {}, set(), [], [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in modules:
        if v not in index:
            visit(v)
    assert not cycles, f"modules that import each other in a circle: {cycles}"


def test_the_layer_rule_holds():
    proc = subprocess.run([str(LINT), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize("module, line", [
    ("fr3e/method/entropy.py", "from fr3e.training.config import TrainConfig  # noqa: F401"),
    ("fr3e/utils/io.py", "import fr3e.cli.common  # noqa: F401"),
])
def test_an_import_that_points_up_fails_naming_the_rule(tmp_path, module, line):
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "fr3e", copy / "fr3e", ignore=shutil.ignore_patterns("__pycache__", "warm_starts"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    target = copy / module
    target.write_text(target.read_text() + "\n" + line + "\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(copy), "HOME": str(tmp_path)}
    proc = subprocess.run([str(LINT), "--no-cache"], cwd=copy, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode != 0
    assert "Layers: cli > rehearsal" in proc.stdout and "BROKEN" in proc.stdout
    assert module.replace("/", ".").removesuffix(".py") in proc.stdout


def test_the_method_stays_importable_from_the_top_and_import_fr3e_stays_cheap():
    code = ("import sys, fr3e; cheap = 'torch' not in sys.modules; "
            "from fr3e import anchors, entropy, modulation; import fr3e.method.values as v; "
            "assert fr3e.values is v and entropy.token_entropy and anchors.select_anchors; "
            "assert modulation.modulation_factors; print(cheap)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True"]
