"""Colab fidelity: installing the book's package into a Colab-like kernel upgrades nothing Colab pins.

Colab preinstalls and pins IPython 7.34 (and its own torch); a package that requires a newer
IPython upgrades it there, and Colab then asks to restart the runtime, again and again. This test
builds a virtual environment (no system site packages) that already holds Colab's pins, installs
the package into it with that environment's own pip, as the reader notebooks' first cell does,
asserts that no preinstalled package changed version, and runs a reader notebook there.

To stay fast, "Colab's torch" is the CPU wheel that lies on this machine's disk (pip's
find-links, /opt/wheels) when there is one, else the book's pinned release; the other
dependencies install at the book's pinned versions (requirements.txt, as constraints), which pip
has cached from the book's own install. The notebook is the fastest chapter by the build's
execution times (DLBOOK_COLAB_NOTEBOOK=NN_name picks another).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import BOOK_ROOT, REPO

sys.path.insert(0, str(REPO / "tools"))

import reader_env  # noqa: E402
import reader_notebooks  # noqa: E402

pytestmark = pytest.mark.slow

# what Colab pins that the package could touch (IPython: its display module; the kernel: Colab's)
COLAB_PINS = {"ipython": "7.34.0", "ipykernel": "6.17.1"}
# a build tool never comes with the package
NOT_EXPECTED = {"jupyter-book", "myst-nb", "sphinx"}


def pip(py: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(py), "-m", "pip", *args], env=reader_env.clean_env(), text=True,
                          capture_output=True, **kw)


def installed(py: Path) -> dict[str, str]:
    r = pip(py, "list", "--format", "json", check=True)
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(r.stdout)}


def local_torch() -> list[str]:
    """Colab's torch, stood in for by a CPU wheel on this machine's disk (and a matching torchvision)."""
    links = os.environ.get("PIP_FIND_LINKS", "")
    wheels = sorted(w for d in links.split() for w in glob.glob(os.path.join(d, "torch-*+cpu-*.whl")))
    if not wheels:
        return []
    return [wheels[-1], "torchvision"]  # pip picks the torchvision made for that torch


def fastest_chapter() -> str:
    choice = os.environ.get("DLBOOK_COLAB_NOTEBOOK")
    docs = reader_notebooks.chapter_docnames(BOOK_ROOT)
    if choice:
        return next(d for d in docs if Path(d).name == choice)
    from jupyter_cache import get_cache

    seconds = {}
    for rec in get_cache(str(BOOK_ROOT / "_build" / ".jupyter_cache")).list_cache_records():
        seconds[Path(rec.uri).resolve()] = (rec.data or {}).get("execution_seconds", 1e9)
    return min(docs, key=lambda d: seconds.get((BOOK_ROOT / f"{d}.md").resolve(), 1e9))


@pytest.fixture(scope="module")
def colab(tmp_path_factory) -> dict:
    """A Colab-like venv: Colab's pins first, then `pip install <package>` with its own pip."""
    root = tmp_path_factory.mktemp("colab")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=reader_env.clean_env())
    py = venv / "bin" / "python"
    constraints = root / "constraints.txt"
    pins = [p for p in reader_env.pins(BOOK_ROOT)
            if not p.lower().startswith(("torch==", "torchvision==", "ipython==", "ipykernel=="))]
    constraints.write_text("\n".join(pins) + "\n")
    colab = [f"{k}=={v}" for k, v in COLAB_PINS.items()] + (local_torch() or ["torch"])
    r = pip(py, "install", "-q", *colab, "-c", str(constraints))
    assert r.returncode == 0, f"could not make the Colab-like venv:\n{r.stderr[-3000:]}"
    before = installed(py)
    pkg = root / "package"  # the package's own files, as pip gets them from git
    pkg.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, pkg / name)
    shutil.copytree(REPO / "src", pkg / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    r = pip(py, "install", "-q", str(pkg), "-c", str(constraints))
    assert r.returncode == 0, f"pip install of the package failed:\n{r.stderr[-3000:]}"
    return {"py": py, "before": before, "after": installed(py), "root": root}


def test_colab_pins_are_present_before_the_install(colab):
    for name, version in COLAB_PINS.items():
        assert colab["before"].get(name) == version
    assert "torch" in colab["before"]


def test_installing_the_package_upgrades_nothing_colab_has(colab):
    changed = {k: (v, colab["after"].get(k)) for k, v in colab["before"].items() if colab["after"].get(k) != v}
    assert not changed, f"pip install of the package changed Colab's packages: {changed}"
    assert "dlbook" in colab["after"]
    assert not NOT_EXPECTED & set(colab["after"])


def test_the_check_can_fail(colab, tmp_path):
    """A package that asks for IPython >= 8 would upgrade Colab's 7.34: pip's dry run says so."""
    pkg = tmp_path / "needs_new_ipython"
    (pkg / "src" / "needs_new_ipython").mkdir(parents=True)
    (pkg / "src" / "needs_new_ipython" / "__init__.py").write_text("")
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "needs-new-ipython"\nversion = "0"\ndependencies = ["ipython>=8"]\n')
    report = tmp_path / "report.json"
    r = pip(colab["py"], "install", "--dry-run", "-q", "--report", str(report), str(pkg))
    assert r.returncode == 0, r.stderr[-2000:]
    would = {i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]}
    assert "ipython" in would


def test_a_reader_notebook_runs_in_colabs_environment(colab):
    """The fastest chapter's reader notebook, top to bottom, in a kernel of that venv, outside the
    repository; glue draws the page's figures and tables there."""
    doc = fastest_chapter()
    work = colab["root"] / "work"
    work.mkdir()
    nb = work / (Path(doc).name + ".ipynb")
    shutil.copy(BOOK_ROOT / reader_notebooks.OUT / f"{doc}.ipynb", nb)
    r = pip(colab["py"], "install", "-q", "nbclient")  # Colab's own runner is its frontend
    assert r.returncode == 0, r.stderr[-2000:]
    before = installed(colab["py"])
    assert all(before.get(k) == v for k, v in COLAB_PINS.items())
    runner = ("import sys, nbformat\nfrom nbclient import NotebookClient\n"
              "nb = nbformat.read(sys.argv[1], as_version=4)\n"
              "NotebookClient(nb, timeout=900, kernel_name='python3').execute()\n"
              "nbformat.write(nb, sys.argv[1])\n")
    env = reader_env.clean_env()
    env["HOME"] = str(colab["root"] / "home")
    r = subprocess.run([str(colab["py"]), "-c", runner, nb.name], cwd=work, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, f"{doc} failed in Colab's environment:\n{r.stdout[-2000:]}\n{r.stderr[-5000:]}"
    ran = nbformat.read(nb, as_version=4)
    images = sum("image/png" in o.get("data", {}) for c in ran.cells if c.cell_type == "code"
                 for o in c.get("outputs", []))
    text = (BOOK_ROOT / "_build" / "html" / f"{doc}.html").read_text()
    body = re.search(r'<article class="bd-article"[^>]*>(.*?)</article>', text, re.S).group(1)
    assert images == len(re.findall(r"<img\b", body)), f"{doc}: {images} figures drawn, the page shows more or fewer"
