"""The build machinery cannot lie: failing cells, timeouts and warnings fail it; library edits re-execute."""

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import build_book  # noqa: E402

pytestmark = pytest.mark.slow

HEADER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# Probe

"""


def make_book(root: Path, body: str, library: str | None = None) -> Path:
    """A throwaway book with one chapter (and optionally a library module under src/)."""
    (root / "chapters").mkdir(parents=True, exist_ok=True)
    (root / "_config.yml").write_text((ROOT / "_config.yml").read_text())
    (root / "references.bib").write_text((ROOT / "references.bib").read_text())
    for extra in ("_static", "tools"):  # theme assets and the book's local Sphinx extensions
        if (ROOT / extra).is_dir():
            shutil.copytree(ROOT / extra, root / extra, dirs_exist_ok=True)
    (root / "intro.md").write_text("# Throwaway\n\nA probe book.\n")
    (root / "_toc.yml").write_text("format: jb-article\nroot: intro\nsections:\n  - file: chapters/probe\n")
    (root / "chapters" / "probe.md").write_text(HEADER + body)
    if library is not None:
        (root / "src").mkdir(exist_ok=True)
        (root / "src" / "probe_lib.py").write_text(library)
    return root


def build(root: Path, timeout: int = 60) -> None:
    build_book.execute_missing(root, jobs=1, timeout=timeout)
    build_book.sphinx_build(root, "html")
    build_book.publish_executed_notebooks(root)


def test_raising_cell_fails_the_build(tmp_path):
    book = make_book(tmp_path, "```{code-cell} ipython3\nraise RuntimeError('deliberately broken')\n```\n")
    with pytest.raises(SystemExit, match="failed to execute"):
        build(book)


def test_sphinx_build_alone_fails_on_a_raising_cell(tmp_path):
    """Even without the parallel pre-execution, Jupyter Book itself must not pass a failing notebook."""
    book = make_book(tmp_path, "```{code-cell} ipython3\n1 / 0\n```\n")
    with pytest.raises(SystemExit, match="jupyter-book build failed"):
        build_book.sphinx_build(book, "html")


def test_cell_timeout_fails_the_build(tmp_path):
    book = make_book(tmp_path, "```{code-cell} ipython3\nimport time\ntime.sleep(30)\n```\n")
    with pytest.raises(SystemExit, match="failed to execute"):
        build(book, timeout=3)


def test_sphinx_warning_fails_the_build(tmp_path):
    book = make_book(tmp_path, "See {ref}`a-label-that-does-not-exist`.\n\n```{code-cell} ipython3\n1 + 1\n```\n")
    with pytest.raises(SystemExit, match="jupyter-book build failed"):
        build(book)


def test_library_change_reexecutes_chapter(tmp_path):
    body = ("```{code-cell} ipython3\nimport sys\nsys.path.insert(0, '../src')\n"
            "from probe_lib import answer\nprint('answer is', answer())\n```\n")
    book = make_book(tmp_path, body, library="def answer():\n    return 41\n")
    build(book)
    page = book / "_build" / "html" / "chapters" / "probe.html"
    assert "answer is 41" in page.read_text()
    # change only the library: the chapter's code cells (jupyter-cache's key) are unchanged
    (book / "src" / "probe_lib.py").write_text("def answer():\n    return 42\n")
    build(book)
    assert "answer is 42" in page.read_text()
    for executed in (book / "_build" / "jupyter_execute" / "chapters" / "probe.ipynb",
                     book / "_build" / "html" / "_sources" / "chapters" / "probe.ipynb"):  # the download
        assert "answer is 42" in executed.read_text()


def test_unchanged_book_is_not_reexecuted(tmp_path):
    book = make_book(tmp_path, "```{code-cell} ipython3\nprint('hi')\n```\n", library="X = 1\n")
    assert build_book.execute_missing(book, jobs=1, timeout=60)  # cold: executes
    assert build_book.execute_missing(book, jobs=1, timeout=60) == []  # warm: nothing to do
