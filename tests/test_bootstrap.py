"""The first cell of every chapter makes a fresh Colab or Binder kernel ready, and is a no-op locally.

The repository URL and branch live in _config.yml (`repository:`); the bootstrap cell, the launch
buttons and the install command must all agree with it.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, version

import jupytext
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import REPO, load_book_config

BOOTSTRAP = REPO / "chapters" / "_bootstrap_cell.py"
CHAPTERS = sorted((REPO / "chapters").glob("[0-9]*.md"))
CONFIG = load_book_config(REPO)
REPO_URL = CONFIG["repository"]["url"].rstrip("/")
BRANCH = CONFIG["repository"]["branch"]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGE = PYPROJECT["project"]["name"]


def bootstrap_source() -> str:
    return BOOTSTRAP.read_text().strip("\n")


def run_cell(source: str) -> dict:
    """Execute a cell's source in a fresh namespace, as a kernel would."""
    namespace: dict = {"__name__": "__main__"}
    exec(compile(source, "<bootstrap cell>", "exec"), namespace)
    return namespace


@pytest.fixture
def pip_calls(monkeypatch) -> list:
    """Record subprocess.check_call instead of running it."""
    calls = []
    monkeypatch.setattr(subprocess, "check_call", lambda cmd, *a, **k: calls.append(list(cmd)) or 0)
    return calls


def test_bootstrap_cell_names_the_configured_repository_and_branch():
    assigned = {}
    for node in ast.walk(ast.parse(bootstrap_source())):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple):
            names = [t.id for t in node.targets[0].elts]
            assigned.update(zip(names, ast.literal_eval(node.value)))
    assert assigned.get("BOOK_REPO") == REPO_URL, "bootstrap cell and _config.yml repository.url differ"
    assert assigned.get("BOOK_BRANCH") == BRANCH, "bootstrap cell and _config.yml repository.branch differ"


def test_there_are_chapters():
    assert CHAPTERS


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_first_code_cell_is_the_hidden_bootstrap_cell(md):
    """Before any other code runs (only the title precedes it). In the .md (what the site executes) and in the paired .ipynb (what Colab and Binder open)."""
    for path in (md, md.with_suffix(".ipynb")):
        assert path.exists(), f"{path.name} missing (`make sync` pairs each chapter with its .ipynb)"
        code = [c for c in jupytext.read(path).cells if c.cell_type == "code"]
        assert code, f"{path.name} has no code cell"
        first = code[0]
        assert first.source.strip("\n") == bootstrap_source(), (
            f"{path.name}: the first cell must be chapters/_bootstrap_cell.py verbatim")
        assert "remove-cell" in first.metadata.get("tags", []), f"{path.name}: bootstrap cell must be tagged remove-cell"


def test_noop_when_the_package_is_importable(pip_calls):
    assert importlib.util.find_spec(PACKAGE) is not None, f"{PACKAGE} must be installed for the book (-e .)"
    run_cell(bootstrap_source())
    assert pip_calls == []


def test_installs_from_the_configured_repository_when_missing(pip_calls, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == PACKAGE else real_find_spec(name, *a))
    run_cell(bootstrap_source())
    assert pip_calls == [[sys.executable, "-m", "pip", "install", "--quiet",
                          f"{PACKAGE} @ git+{REPO_URL}@{BRANCH}"]]
    req = Requirement(pip_calls[0][-1])  # a valid PEP 508 direct reference that pip understands
    assert (req.name, req.url) == (PACKAGE, f"git+{REPO_URL}@{BRANCH}")
    assert REPO_URL.startswith("https://github.com/"), "Colab launch links need a GitHub repository"


# --- Binder (repo2docker) -------------------------------------------------------------------
# Binder opens the reader notebooks on launch_buttons.notebooks_branch, whose binder/ folder is
# this repository's binder/ plus the package line (tools/reader_notebooks.py writes it).

def binder_requirements() -> list[str]:
    lines = [ln.split("#", 1)[0].strip() for ln in (REPO / "binder" / "requirements.txt").read_text().splitlines()]
    return [ln for ln in lines if ln]


def test_binder_installs_the_cpu_only_torch_of_the_pins():
    """Not PyPI's Linux default for torch (the CUDA build, several GB): the CPU build, same release."""
    lines = binder_requirements()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    pinned = {Requirement(ln).name: Requirement(ln) for ln in
              (ln.split("#", 1)[0].strip() for ln in (REPO / "requirements.txt").read_text().splitlines())
              if ln and not ln.startswith("-")}
    for name in ("torch", "torchvision"):
        [line] = [ln for ln in lines if ln.startswith(name + "==")]
        (spec,) = Requirement(line).specifier
        assert spec.version.endswith("+cpu"), f"binder/requirements.txt: {line} is not the CPU build"
        (pin,) = pinned[name].specifier
        assert Version(spec.version).public == Version(pin.version).public, (line, str(pinned[name]))


def test_binder_environment_gets_the_package_from_the_configured_repository(tmp_path):
    sys.path.insert(0, str(REPO / "tools"))
    import reader_notebooks

    reader_notebooks.write_binder(REPO, CONFIG, tmp_path)
    lines = [ln for ln in (tmp_path / "binder" / "requirements.txt").read_text().splitlines() if ln]
    # at the commit the notebooks are built from (the branch outside a git checkout)
    ref = reader_notebooks.git_commit(REPO) or BRANCH
    assert lines[-1] == f"{PACKAGE} @ git+{REPO_URL}@{ref}"
    assert (tmp_path / "binder" / "runtime.txt").read_text() == (REPO / "binder" / "runtime.txt").read_text()


def test_requirements_txt_installs_the_package():
    lines = [ln.strip() for ln in (REPO / "requirements.txt").read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    assert lines[-1] == "-e .", "requirements.txt must end with `-e .` (the book's package, editable)"


def runtime_python() -> Version:
    text = (REPO / "binder" / "runtime.txt").read_text().strip()
    m = re.fullmatch(r"python-(\d+\.\d+)", text)
    assert m, f"binder/runtime.txt must read python-X.Y, got {text!r}"
    return Version(m.group(1))


def test_binder_python_satisfies_the_package_and_every_pin():
    """repo2docker's default Python is older than some pins need: binder/runtime.txt chooses one they all accept."""
    py = runtime_python()
    assert py in SpecifierSet(PYPROJECT["project"]["requires-python"])
    from importlib.metadata import metadata

    too_new = []
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        try:
            meta = metadata(req.name)
        except PackageNotFoundError:
            continue
        if version(req.name) not in req.specifier:
            continue  # a different version is installed here; its metadata says nothing about the pin
        needs = meta.get("Requires-Python")
        if needs and py not in SpecifierSet(needs):
            too_new.append(f"{req} needs Python {needs}")
    assert not too_new, f"binder/runtime.txt's Python {py} cannot install: {too_new}"


def test_colab_keeps_its_preinstalled_torch():
    """Lower bounds only for torch/torchvision, and the bootstrap never upgrades: Colab's stay."""
    deps = {Requirement(d).name: Requirement(d) for d in PYPROJECT["project"]["dependencies"]}
    for name in ("torch", "torchvision"):
        assert all(s.operator == ">=" for s in deps[name].specifier), f"{name}: {deps[name]} could replace Colab's"
    assert not re.search(r"--upgrade|-U\b|--force", bootstrap_source())


# --- Colab: every import a chapter or the library makes is installed by the bootstrap ---------

def top_level_imports(source: str) -> set[str]:
    code = "\n".join(ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!")))
    tree = ast.parse(code)
    # `try: import x / except ImportError:` is an optional import (dlbook.gluing's myst-nb): not required
    optional = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers):
            optional.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_only_guarded_imports_count_as_optional():
    assert top_level_imports("try:\n    import myst_nb\nexcept ImportError:\n    pass") == set()
    assert top_level_imports("try:\n    import myst_nb\nexcept KeyError:\n    pass") == {"myst_nb"}
    assert top_level_imports("from myst_nb import glue") == {"myst_nb"}


def test_package_dependencies_cover_every_import():
    """A module missing from pyproject's dependencies would fail in a fresh Colab kernel."""
    sources = [p.read_text() for p in sorted((REPO / "src").rglob("*.py"))]
    for md in CHAPTERS:
        sources += [c.source for c in jupytext.read(md).cells if c.cell_type == "code"]
    modules = set().union(*(top_level_imports(s) for s in sources))
    declared = {canonicalize_name(Requirement(d).name) for d in PYPROJECT["project"]["dependencies"]}
    declared.add(canonicalize_name(PACKAGE))
    dists = packages_distributions()
    local = {p.name for p in (REPO / "src").iterdir()} | {p.stem for p in (REPO / "src").iterdir()}
    missing = {}
    for mod in sorted(modules - set(sys.stdlib_module_names) - local - {"__future__"}):
        providers = {canonicalize_name(d) for d in dists.get(mod, [])}
        # (the walk starts from pyproject's list, not from the installed package's metadata, which
        # is stale until the next `pip install -e .`)
        if not providers & declared and not _provided_by_a_dependency(providers, declared - {canonicalize_name(PACKAGE)}):
            missing[mod] = sorted(providers) or ["<not installed>"]
    assert not missing, f"imported but not in pyproject.toml dependencies: {missing}"


def _provided_by_a_dependency(providers: set[str], declared: set[str]) -> bool:
    """True if a provider is itself installed as a requirement of a declared dependency."""
    from importlib.metadata import requires

    seen, todo = set(), list(declared)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:
            continue
        for r in reqs:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return bool(providers & seen)
