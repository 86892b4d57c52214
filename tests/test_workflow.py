"""The publishing workflow (.github/workflows/) is valid and reuses the Makefile.

Linted against GitHub's workflow schema (the copy vendored in check-jsonschema: no network).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, load_book_config

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
PUBLISH = REPO / ".github" / "workflows" / "publish.yml"


def schema_errors(path: Path) -> str:
    """check-jsonschema's report on one workflow file ('' when valid)."""
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or "check-jsonschema"
    r = subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", str(path)],
                       capture_output=True, text=True)
    return "" if r.returncode == 0 else (r.stdout + r.stderr)


def steps(workflow: dict) -> list[dict]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def test_there_is_a_publishing_workflow():
    assert PUBLISH in WORKFLOWS


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_the_schema(path):
    errors = schema_errors(path)
    assert not errors, errors


def test_the_schema_check_can_fail(tmp_path):
    """A workflow with a misspelt key (`step:`) and a job without `runs-on` is rejected."""
    broken = yaml.safe_load(PUBLISH.read_text())
    job = broken["jobs"]["build"]
    job["step"] = job.pop("steps")
    del job["runs-on"]
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(broken))
    assert schema_errors(bad)


def test_it_reuses_the_makefile():
    """The book is built by `make book`, nothing else: no jupyter-book, sphinx or pip calls here."""
    runs = "\n".join(s.get("run", "") for s in steps(yaml.safe_load(PUBLISH.read_text())))
    assert "make book" in runs
    for tool in ("jupyter-book", "sphinx-build", "pip install", "build_book.py"):
        assert tool not in runs, f"publish.yml repeats a Makefile step: {tool}"


def test_it_deploys_the_site_and_pushes_the_reader_notebooks_to_the_launch_branch():
    wf = yaml.safe_load(PUBLISH.read_text())
    all_steps = steps(wf)
    upload = [s for s in all_steps if s.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert upload and upload[0]["with"]["path"] == "_build/html"
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in all_steps)
    push = "\n".join(s.get("run", "") for s in all_steps if "git push" in s.get("run", ""))
    # the branch is read from _config.yml at run time, never written here
    assert "tools/reader_notebooks.py --print-branch" in push and "cd _build/colab" in push
    branch = load_book_config(REPO)["launch_buttons"]["notebooks_branch"]
    text = PUBLISH.read_text()
    assert f"heads/{branch}" not in text and f"-b {branch}" not in text, "branch name repeated in publish.yml"
    out = subprocess.run([sys.executable, str(REPO / "tools" / "reader_notebooks.py"), "--print-branch"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == branch


def test_it_runs_on_the_configured_branch():
    wf = yaml.safe_load(PUBLISH.read_text())
    on = wf.get("on", wf.get(True))  # PyYAML reads the bare key `on` as True
    assert load_book_config(REPO)["repository"]["branch"] in on["push"]["branches"]
