"""fr3e.study.reproduction: profile selection, parameter building, output trimming; and the notebooks' hygiene."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from fr3e.cli import reproduce as reproduce_cli
from fr3e.study import reproduction as reproduce

# nbformat is imported inside the tests that read notebooks: importing it costs seconds (a JSON-schema format
# grammar), which a test process that runs none of them then never pays.
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


# ---------------------------------------------------------------------------------------------- profiles
def test_auto_picks_paper_only_where_it_can_run(monkeypatch):
    profile, why = reproduce.select_profile("auto", device_count=0)
    assert profile == "tiny" and "no CUDA GPU" in why
    # one GPU (or eight without vLLM): the tiny profile, saying what the paper profile would need
    monkeypatch.setattr(reproduce, "paper_requirements", lambda n: [] if n >= 8 else ["8 CUDA GPUs"])
    profile, why = reproduce.select_profile("auto", device_count=1)
    assert profile == "tiny" and "1 CUDA GPU(s) visible, but the paper profile needs 8 CUDA GPUs" in why
    profile, why = reproduce.select_profile("auto", device_count=8)
    assert profile == "paper" and "8 CUDA GPU(s)" in why
    assert reproduce.select_profile("tiny", device_count=8)[0] == "tiny"
    with pytest.raises(SystemExit, match="8 CUDA GPUs"):
        reproduce.select_profile("paper", device_count=1)


def test_paper_without_gpus_exits_naming_what_it_needs():
    with pytest.raises(SystemExit) as exc:
        reproduce.select_profile("paper", device_count=0)
    message = str(exc.value)
    for needed in ("CUDA GPUs", "pip install -e '.[gpu]'", "reproduce/configs/table1/", "make plan-table1"):
        assert needed in message


def test_main_paper_without_gpus_returns_error(monkeypatch, capsys):
    monkeypatch.setattr(reproduce, "cuda_devices", lambda: 0)
    assert reproduce_cli.main(["--profile", "paper", "table1"]) == 2
    assert "CUDA GPUs" in capsys.readouterr().err


def test_unknown_artefact_is_an_error(monkeypatch, capsys):
    assert reproduce_cli.main(["--profile", "tiny", "--dry-run", "fig9"]) == 2
    assert "unknown artefact" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------- parameters
def test_full_tiny_parameters():
    p = reproduce.full_parameters("tiny")
    # at least 5 seeds per arm and 512 problems per split; steps and the rest from the recipes
    assert p["models"] == ["general", "math"] and len(p["seeds"]) >= 5 and p["eval_n"] == 16
    assert p["eval_problems"] >= 512 and p["steps"] is None and p["controls"] == ["coin", "matched"]
    assert p["runs_root"] == "../runs" and p["results_dir"] == "../results" and p["overrides"] == []
    assert reproduce.full_parameters("paper")["controls"] == []


def test_parameters_are_restricted_to_declared_names():
    params = reproduce.parameters_for("tiny", smoke=False, notebook=NOTEBOOK_DIR / "02_table1.ipynb")
    assert "models" in params and "problem_index" not in params and "smooth" not in params
    walk = reproduce.parameters_for("tiny", smoke=False, notebook=NOTEBOOK_DIR / "01_walkthrough.ipynb")
    assert walk["m"] == 16 and "seeds" not in walk
    assert reproduce.parameters_for("tiny", smoke=True)["steps"] == reproduce.SMOKE_PARAMETERS["steps"]


def test_dry_run_plans_every_notebook_in_order():
    record = reproduce.reproduce(["all"], profile="auto", smoke=True, dry_run=True, device_count=0)
    assert list(record["notebooks"]) == [a for a in reproduce.NOTEBOOKS if a not in reproduce.STUDIES]
    studies = reproduce.reproduce(["compute", "ablations"], profile="tiny", dry_run=True, device_count=0)
    assert list(studies["notebooks"]) == ["compute", "ablations"]  # their own targets, not in all
    assert record["profile"] == "tiny" and record["smoke"] is True
    one = reproduce.reproduce(["entropy"], profile="tiny", dry_run=True, device_count=0)
    assert list(one["notebooks"]) == ["entropy"]
    assert one["notebooks"]["entropy"]["parameters"]["seeds"] == reproduce.TINY_SEEDS


def test_strip_outputs_trims_streams_and_huge_outputs():
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="a" * 50 + "TAIL"),
                    nbformat.v4.new_output("display_data", data={"image/png": "b" * 5000})]
    nb.cells.append(cell)
    assert reproduce.strip_outputs(nb, max_stream=10, max_bytes=1000) == 2
    assert nb.cells[0].outputs[0]["text"].endswith("aaaaaaTAIL") and "trimmed" in nb.cells[0].outputs[0]["text"]
    assert "removed" in nb.cells[0].outputs[1]["text"]


# ---------------------------------------------------------------------------------------------- notebooks
def test_every_artefact_has_its_notebook():
    assert [p.name for p in NOTEBOOKS] == sorted(reproduce.NOTEBOOKS.values())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_clean(path):
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for c in code:
        assert not c.get("outputs"), f"{path.name}: commit notebooks without outputs (clear them)"
        assert c.get("execution_count") is None, f"{path.name}: commit notebooks without execution counts"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: exactly one code cell must be tagged 'parameters'"
    assert nb.metadata.kernelspec["name"] == reproduce.KERNEL
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "claim" in nb.cells[0].source.lower()
    for c in code:  # logic lives in fr3e/, not in notebooks
        tree = ast.parse(c.source)
        assert not any(isinstance(n, ast.FunctionDef | ast.ClassDef | ast.Lambda) for n in ast.walk(tree)), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_defaults_are_the_smoke_values(path):
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    values = {}
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign), f"{path.name}: the parameters cell holds plain assignments only"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    assert values == {k: reproduce.SMOKE_PARAMETERS[k] for k in values}
    assert values.get("profile") == "tiny"


def test_full_table1_plan_counts_runs_and_controls(tmp_path):
    """The full Table 1 parameters plan 2 methods × 2 models × 5 seeds, coin × 3 seeds on general, matched ×
    2 models × 5 seeds (matched runs wait for the FR3E runs of their model)."""
    from fr3e.study import jobs, runs

    p = reproduce.parameters_for("tiny", smoke=False, notebook=NOTEBOOK_DIR / "02_table1.ipynb")
    extra = runs._eval_overrides(p["overrides"], p["eval_n"], p["eval_problems"])
    jobs = jobs.plan_jobs(runs.recipes("tiny"), p["models"], p["seeds"], p["steps"], tmp_path, extra,
                          p["controls"], tmp_path / "cache", warm_starts=False)
    keys = [j.key for j in jobs]
    assert len(keys) == 20 + 3 + 10
    assert keys.index("grpo_pp_matched-general-s0") < keys.index("grpo_pp-general-s0")  # long jobs first
    matched = next(j for j in jobs if j.key == "grpo_pp_matched-math-s4")
    assert matched.deps == [f"fr3e-math-s{s}" for s in range(5)] and matched.info is None


def test_progress_line_on_a_pipe(tmp_path):
    import io
    import json

    status = tmp_path / "progress.json"
    status.write_text(json.dumps({"jobs": {"a": {"kind": "run", "state": "pending", "steps": 10}}}))
    out = io.StringIO()
    line = reproduce.ProgressLine(stream=out, every_s=0.05)
    line.follow("notebook 2/6 table1", status)
    line.close()
    text = out.getvalue().splitlines()
    assert text[0].endswith("notebook 2/6 table1 | runs 0/1 done, steps 0/10, time left: after the first steps")
    assert len(text) == 2  # the same state is not repeated on a pipe (the last line is the closing one)


def test_reproduce_record_names_notebooks_relative_to_the_repository(tmp_path):
    assert reproduce._repo_relative(reproduce.REPO_ROOT / "results" / "table1" / "02_table1.ipynb") == \
        "results/table1/02_table1.ipynb"
    outside = tmp_path / "x.ipynb"
    assert reproduce._repo_relative(outside) == str(outside.resolve())


def test_world_parameters_and_results_folders():
    """The studied world writes results/, the control world results/<world>/; smoke runs keep their folder and
    carry the world; an unknown world is one error naming the worlds."""
    assert reproduce.full_parameters("tiny")["world"] == "paths"
    assert reproduce.full_parameters("tiny")["results_dir"] == "../results"
    control = reproduce.full_parameters("tiny", "arithmetic")
    assert (control["world"], control["results_dir"]) == ("arithmetic", "../results/arithmetic")
    smoke = reproduce.parameters_for("tiny", True, world="arithmetic")
    assert smoke["world"] == "arithmetic" and smoke["results_dir"] == reproduce.SMOKE_PARAMETERS["results_dir"]
    with pytest.raises(ValueError, match="choose one of arithmetic, paths"):
        reproduce.reproduce(["table1"], "tiny", dry_run=True, world="maze")
    record = reproduce.reproduce(["table1"], "tiny", dry_run=True, world="arithmetic")
    assert record["world"] == "arithmetic"
    assert record["notebooks"]["table1"]["parameters"]["results_dir"] == "../results/arithmetic"


def test_a_rerun_is_compared_with_the_table_it_replaced(tmp_path):
    from fr3e.study.tables import compare_tables

    before = [{"model": "general", "system": "GRPO++", "easy": "40.0 ± 2.0", "avg": "30.0 ± 1.0", "seeds": 5},
              {"model": "general", "system": "base", "easy": "50.0", "avg": "35.0", "seeds": 1}]
    after = [{"model": "general", "system": "GRPO++", "easy": "41.5 ± 2.0", "avg": "33.0 ± 1.0", "seeds": 5},
             {"model": "general", "system": "base", "easy": "50.0", "avg": "35.1", "seeds": 1}]
    cmp = compare_tables(before, after).set_index(["system", "benchmark"])
    # SE of a difference of 5-seed means with std 2: sqrt(0.8 + 0.8) = 1.26, tolerance 2.48
    assert cmp.loc[("GRPO++", "easy"), "tolerance"] == 2.48 and cmp.loc[("GRPO++", "easy"), "within"]
    assert not cmp.loc[("GRPO++", "avg"), "within"]  # +3.0 against a tolerance of 1.24
    assert cmp.loc[("base", "easy"), "within"] and not cmp.loc[("base", "avg"), "within"]  # one seed: equal or not
    (tmp_path / "table1").mkdir()
    (tmp_path / "table1" / "summary.json").write_text(__import__("json").dumps({"table": after}))
    record = reproduce.compare_with_committed(before, tmp_path)
    assert (record["cells"], record["within"], record["largest_difference"]) == (4, 2, 3.0)


@pytest.mark.slow
@pytest.mark.parametrize("stem", ["01_walkthrough", "02_table1", "03_entropy", "06_all_right"])
def test_notebooks_open_on_the_committed_results(stem, tmp_path):
    """source='committed': the notebook runs end to end on results/ alone (archived run logs and base evaluations,
    the committed sample and cards), trains and evaluates nothing, writes nothing into results/, and its
    executed cells carry no stderr (no warnings, no progress bars)."""
    import hashlib
    import json

    import papermill

    root = NOTEBOOK_DIR.parent / "results"
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
    out = tmp_path / f"{stem}.ipynb"
    papermill.execute_notebook(str(NOTEBOOK_DIR / f"{stem}.ipynb"), str(out), kernel_name="python3",
                               cwd=str(NOTEBOOK_DIR), progress_bar=False, log_output=False,
                               parameters={"source": "committed", "committed_dir": str(root),
                                           "results_dir": str(tmp_path / "nowhere"), "runs_root": str(tmp_path / "runs")})
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
    assert after == before  # nothing in results/ written, added or removed
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "runs").exists()  # nothing trained or evaluated
    cells = json.loads(out.read_text())["cells"]
    stderr = [o for c in cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert not stderr, stderr[:2]
