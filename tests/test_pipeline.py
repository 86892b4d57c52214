"""The build machinery cannot lie: failing cells, timeouts and warnings fail it; library edits re-execute
exactly the chapters that import the edited module; chapter numbers are the book's; the log is quiet."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MYST_HEADER

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import build_book  # noqa: E402
import libdeps  # noqa: E402

pytestmark = pytest.mark.slow

HEADER = MYST_HEADER + "\n# Probe\n\n"


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


# --- per-chapter re-execution: a chapter runs again when a library module it imports changes ----

def chapter(title: str, code: str) -> str:
    return HEADER.replace("# Probe\n", f"# {title}\n") + f"Text.\n\n```{{code-cell}} ipython3\n{code}\n```\n"


def make_two_chapter_book(root: Path) -> Path:
    """Chapter A imports module alpha; chapter B imports beta, which imports base (B's only transitive use)."""
    make_book(root, "")
    (root / "chapters" / "probe.md").unlink()
    path = "import sys\nsys.path.insert(0, '../src')\n"
    (root / "chapters" / "01_a.md").write_text(chapter("A", path + "from probe_pkg import alpha\nprint('a says', alpha.VALUE)"))
    (root / "chapters" / "02_b.md").write_text(chapter("B", path + "from probe_pkg.beta import value\nprint('b says', value())"))
    pkg = root / "src" / "probe_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""A throwaway library."""\n')
    (pkg / "alpha.py").write_text("VALUE = 1\n")
    (pkg / "beta.py").write_text("from . import base\n\n\ndef value():\n    return base.BASE * 10\n")
    (pkg / "base.py").write_text("BASE = 1\n")
    (pkg / "unused.py").write_text("X = 1\n")
    (root / "_toc.yml").write_text("format: jb-article\nroot: intro\nsections:\n"
                                   "  - file: chapters/01_a\n  - file: chapters/02_b\n")
    return root


def executed(book: Path) -> set[str]:
    """Chapters that build_book executes now (the rest come from the cache)."""
    return {s["chapter"] for s in build_book.execute_missing(book, jobs=1, timeout=60)}


def html(book: Path, name: str) -> str:
    return (book / "_build" / "html" / "chapters" / f"{name}.html").read_text()


def test_module_change_reexecutes_only_the_chapters_that_import_it(tmp_path):
    book = make_two_chapter_book(tmp_path)
    pkg = book / "src" / "probe_pkg"
    assert executed(book) == {"chapters/01_a.md", "chapters/02_b.md"}  # cold
    assert executed(book) == set()  # warm
    (pkg / "alpha.py").write_text("# a comment is an edit too\nVALUE = 2\n")
    assert executed(book) == {"chapters/01_a.md"}
    (pkg / "base.py").write_text("BASE = 3\n")  # imported by B only through beta
    assert executed(book) == {"chapters/02_b.md"}
    (pkg / "unused.py").write_text("X = 2\n")  # imported by no chapter
    assert executed(book) == set()
    (book / "requirements.txt").write_text("numpy\n")  # the pinned environment keys every chapter
    assert executed(book) == {"chapters/01_a.md", "chapters/02_b.md"}
    build_book.sphinx_build(book, "html")
    build_book.publish_executed_notebooks(book)
    assert "a says 2" in html(book, "01_a") and "b says 30" in html(book, "02_b")


def test_plain_jupyter_book_build_reexecutes_after_a_library_edit(tmp_path):
    """A reader's `jupyter-book build .` (no tools/build_book.py) after editing src/ gets fresh outputs."""
    book = make_two_chapter_book(tmp_path)
    log = build_book.sphinx_build(book, "html")  # MyST-NB executes both chapters
    assert sorted(re.findall(r"chapters/(\w+)\.md: Executing notebook", log)) == ["01_a", "02_b"]
    assert "b says 10" in html(book, "02_b")
    (book / "src" / "probe_pkg" / "base.py").write_text("BASE = 4\n")
    log = build_book.sphinx_build(book, "html")
    assert re.findall(r"chapters/(\w+)\.md: Executing notebook", log) == ["02_b"]
    assert "b says 40" in html(book, "02_b") and "a says 1" in html(book, "01_a")
    log = build_book.sphinx_build(book, "html")  # nothing changed: nothing executes
    assert "Executing notebook" not in log


def test_module_closure_follows_every_kind_of_import(tmp_path):
    src = tmp_path / "src"
    (src / "pkg" / "sub").mkdir(parents=True)
    files = {
        "pkg/__init__.py": "", "pkg/a.py": "from .sub import c\n", "pkg/b.py": "X = 1\n",
        "pkg/sub/__init__.py": "", "pkg/sub/c.py": "def f():\n    from .. import d  # lazy\n",
        "pkg/d.py": "import pkg.e as e\n", "pkg/e.py": "", "pkg/never.py": "", "other.py": "",
    }
    for name, text in files.items():
        (src / name).write_text(text)
    got = {p.relative_to(src).as_posix() for p in libdeps.module_closure(["import numpy\n%matplotlib inline\nfrom pkg import a"], src)}
    assert got == {"pkg/__init__.py", "pkg/a.py", "pkg/sub/__init__.py", "pkg/sub/c.py", "pkg/d.py", "pkg/e.py"}


def test_the_books_chapters_depend_on_their_own_topic_modules():
    chapter = ROOT / "chapters" / "11_pooling.md"
    if not chapter.exists():
        pytest.skip("chapter 11 is not in this checkout")
    deps = {p.relative_to(ROOT).as_posix() for p in libdeps.chapter_dependencies(chapter, ROOT)}
    assert {"src/dlbook/__init__.py", "src/dlbook/pooling.py", "requirements.txt"} <= deps
    assert "src/dlbook/dropout.py" not in deps  # a topic module chapter 11 does not use


# --- the book's chapter numbers and a quiet build log ---------------------------------------

NUMBERED = {"06_first": 6, "07_second": 7, "09_third": 9, "unnumbered_name": 10}


@pytest.fixture(scope="module")
def numbered_book(tmp_path_factory):
    """Parts numbered as the book's are; built with tools/build_book.py as `make book` does (log captured)."""
    root = make_book(tmp_path_factory.mktemp("numbered"), "")
    (root / "chapters" / "probe.md").unlink()
    (root / "start.md").write_text("# Getting started\n\nAn unnumbered page.\n")
    for name in NUMBERED:
        body = (f"Equation {{eq}}`eq-{name}` and {{numref}}`fig-{name}`.\n\n$$ a = b $$ (eq-{name})\n\n"
                f"## A section\n\n```{{figure}} ../_static/favicon.svg\n:name: fig-{name}\n\nA caption.\n```\n\n"
                f"```{{code-cell}} ipython3\nprint('hello from {name}')\n```\n")
        (root / "chapters" / f"{name}.md").write_text(HEADER.replace("# Probe\n", f"# Title {name}\n") + body)
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n"
        "  - caption: Getting started\n    chapters:\n      - file: start\n"
        "  - caption: Part II\n    numbered: true\n    chapters:\n"
        "      - file: chapters/06_first\n      - file: chapters/07_second\n"
        "  - caption: Part III\n    numbered: true\n    chapters:\n"
        "      - file: chapters/09_third\n      - file: chapters/unnumbered_name\n")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "build_book.py"), str(root), "--jobs", "1"],
                       capture_output=True, text=True, env=build_book.build_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return root, r.stdout + r.stderr


@pytest.mark.parametrize("name", NUMBERED)
def test_chapter_numbers_come_from_file_names(numbered_book, name):
    """chapters/07_x.md is chapter 7 (title, sidebar, sections, figures, equations) whatever precedes it."""
    book, _ = numbered_book
    n = NUMBERED[name]
    page = html(book, name)
    assert re.search(rf"<title>{n}\. Title {name}", page), "the page title does not carry the chapter number"
    assert f'<span class="section-number">{n}.1. </span>A section' in page
    assert f'<span class="caption-number">Fig. {n}.1 </span>' in page
    assert f'<span class="eqno">({n}.1)' in page
    assert f"Eq. {n}.1" in page and f"Fig. {n}.1" in page  # the cross-references
    sidebar = dict(re.findall(r'href="(?:\.\./)?(?:chapters/)?(\w+)\.html">(\d+)\. Title', html(book, "06_first")))
    assert {k: int(v) for k, v in sidebar.items() if k != "06_first"} == {k: v for k, v in NUMBERED.items() if k != "06_first"}


KERNEL_NOISE = re.compile(r"without encryption|IPKernelApp\] WARNING|Debugger warning|frozen modules|"
                          r"RuntimeWarning|DeprecationWarning", re.I)


def test_build_log_has_no_kernel_noise(numbered_book):
    _, log = numbered_book
    assert log.count("executed chapters/") == len(NUMBERED)  # kernels did run
    noise = [line for line in log.splitlines() if KERNEL_NOISE.search(line)]
    assert not noise, "noise in the build log:\n" + "\n".join(noise)


def test_kernel_noise_check_sees_the_unencrypted_kernel_warning(tmp_path):
    """The check above can fail: a kernel started the way nbclient does by default warns in the log."""
    script = ("import nbformat\nfrom jupyter_cache.executors.utils import single_nb_execution\n"
              "nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('1')])\n"
              "nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}\n"
              "import sys; sys.path.insert(0, sys.argv[2])\n"
              "if sys.argv[1] == 'fixed':\n    import kernel_transport; kernel_transport.encrypt_kernel_transport()\n"
              "assert single_nb_execution(nb, cwd='.', timeout=60, allow_errors=False).err is None\n")
    logs = {}
    for mode in ("default", "fixed"):
        r = subprocess.run([sys.executable, "-c", script, mode, str(ROOT / "tools")], capture_output=True,
                           text=True, cwd=tmp_path, env=build_book.build_env())
        assert r.returncode == 0, r.stderr
        logs[mode] = r.stdout + r.stderr
    if "without encryption" not in logs["default"]:
        pytest.skip("this ipykernel does not warn about unencrypted transport")
    assert KERNEL_NOISE.search(logs["default"]) and not KERNEL_NOISE.search(logs["fixed"])
