"""Every document, file and folder the project's code, notebooks and docs point to is in the repository.

Two kinds of reference are checked over the tracked text files (code, notebooks, Markdown, configs):
- names of documents that do not ship with the project, and numbered items ("issue 12", "defect 3",
  "rule 4") that refer to lists the repository does not hold;
- repository paths: Markdown links and `backticked` paths under the project's top-level folders must exist
  (placeholders such as `results/<artefact>/` and the untracked `runs/` are left alone).
"""

import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = ("fr3e", "notebooks", "reproduce", "results", "tests", "docs", "examples")
SUFFIXES = {".py", ".md", ".ipynb", ".yaml", ".yml", ".toml", ".txt", ".cfg"}
ABSENT = re.compile(r"\b(?:PAPER|DESIGN|STYLE)\.md\b|\b(?:issue|defect|style rule)s? #?\d+", re.IGNORECASE)
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
TICKED = re.compile(r"`((?:" + "|".join(TOP) + r")/[^`\s]*)`")
INSTALLED = {"fr3e/recipes/"}  # where the wheel puts reproduce/configs/ (pyproject.toml maps it)
PLACEHOLDER = re.compile(r"[<>*{}$…]|\.\.\.|\bN\b|XX")


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    files = [ROOT / n for n in names if Path(n).suffix in SUFFIXES or Path(n).name == "Makefile"]
    return [f for f in files if f.exists() and not f.relative_to(ROOT).as_posix().startswith("results/runs/")]


def text_of(path: Path) -> str:
    if path.suffix == ".ipynb":  # the cells' sources, not the outputs of the last execution
        cells = json.loads(path.read_text())["cells"]
        return "\n".join("".join(c.get("source", "")) for c in cells)
    return path.read_text(errors="replace")


def exists(ref: str, base: Path) -> bool:
    ref = ref.split("::")[0].split(":")[0].rstrip(".,;")
    for root in (base, ROOT):
        if (root / ref).exists():
            return True
    return False


def test_no_reference_to_documents_the_repository_does_not_hold():
    hits = []
    for path in tracked_text_files():
        if path == Path(__file__):
            continue
        for n, line in enumerate(text_of(path).splitlines(), 1):
            for m in ABSENT.finditer(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {m.group(0)!r}")
    assert not hits, "references to documents or numbered items outside the repository:\n" + "\n".join(hits)


def test_every_repository_path_mentioned_exists():
    missing = []
    for path in tracked_text_files():
        if path == Path(__file__):
            continue
        text = text_of(path)
        refs = []
        if path.suffix in (".md", ".ipynb"):
            refs += [r for r in LINK.findall(text) if not re.match(r"[a-z]+:", r)]
        refs += TICKED.findall(text)
        for ref in refs:
            if PLACEHOLDER.search(ref) or ref.startswith("runs/") or ref in INSTALLED:
                continue
            if not exists(ref, path.parent):
                missing.append(f"{path.relative_to(ROOT)}: {ref}")
    assert not missing, "paths that are not in the repository:\n" + "\n".join(sorted(set(missing)))


def test_the_installed_package_paths_are_mapped():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert all(p.rstrip("/") in pyproject for p in INSTALLED)


def test_the_checks_catch_what_they_look_for(tmp_path):
    assert ABSENT.search("see DESIGN.md") and ABSENT.search("(issue 12 §3)") and ABSENT.search("Defect 9")
    assert not ABSENT.search("a tissue 12 cells wide")
    assert TICKED.findall("read `docs/nowhere.md` and `fr3e/method/anchors.py`") == ["docs/nowhere.md",
                                                                                   "fr3e/method/anchors.py"]
    assert not exists("docs/nowhere.md", tmp_path) and exists("fr3e/method/anchors.py", tmp_path)
