"""fr3e.training.runlog: what a provenance record says about the code that produced it."""

import subprocess

from fr3e.training.runlog import git_sha


def test_git_sha_is_dirty_for_code_changes_not_for_results(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "pkg").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "README.md").write_text("numbers\n")
    (tmp_path / "reproduce" / "worlds").mkdir(parents=True)
    (tmp_path / "reproduce" / "worlds" / "scorecard-paths.json").write_text("{}\n")
    (tmp_path / "reproduce" / "worlds" / "scorecard.py").write_text("y = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = git_sha(tmp_path / "pkg")
    assert clean and not clean.endswith("-dirty")
    (tmp_path / "results" / "README.md").write_text("new numbers\n")  # an output the reproduction rewrites
    (tmp_path / "reproduce" / "worlds" / "scorecard-paths.json").write_text('{"new": 1}\n')  # a scorecard's output
    assert git_sha(tmp_path / "pkg") == clean
    (tmp_path / "reproduce" / "worlds" / "scorecard.py").write_text("y = 2\n")  # the code that writes it counts
    assert git_sha(tmp_path / "pkg") == clean + "-dirty"
    (tmp_path / "reproduce" / "worlds" / "scorecard.py").write_text("y = 1\n")
    (tmp_path / "pkg" / "code.py").write_text("x = 2\n")
    assert git_sha(tmp_path / "pkg") == clean + "-dirty"
