"""Reader notebooks (tools/reader_notebooks.py): plain Jupyter notebooks that read like the site.

1. Each construct, on a small probe book built here (cite, ref, numref, eq, targets, labelled
   equations, admonitions, exercises and solutions, glue, hidden cells, the bootstrap cell).
2. The built book (`make book` first): one reader notebook per chapter under _build/colab/, laid
   out as the launch URLs expect, no MyST left, every glued value in the prose, every code cell of
   the chapter present and in order; the cells the site hides collapsed (Jupyter's
   `source_hidden`, Colab's form view under a `#@title` that says what the cell does); the
   bootstrap cell and binder/ pinned to the commit the notebooks were built from.
   From the executed book (what strict nbval re-executes in the reader's kernel in `make test`,
   so no third execution of the whole book): no MyST in any output; cells hidden on the site print
   nothing; the figures and tables a reader's run draws (glue shows what it glues outside the
   book build) match the site's, chapter by chapter.
3. Outside the repository, as Colab runs them: a fresh virtual environment (tools/reader_env.py,
   cached under _build/) gets only `pip install` of the package (no [book] extra); its dependency
   tree holds no Sphinx, myst-nb or jupyter-book; reader notebooks execute top to bottom there, in
   a working folder outside the repository: every chapter with DLBOOK_READER_NOTEBOOKS=all (as
   `make test` and CI run them), a comma list of chapter stems, or else the two fastest
   chapters (by the build's execution times).
   Strict nbval then re-executes each published notebook (the same code cells, checked above)
   in that environment's `dlbook-reader` kernel and compares the text outputs. The executed reader notebooks are checked like the book: no MyST in any cell or output, and
   the site's count of figures and tables.
4. Colab's pins: the package installs into a venv where Colab's IPython 7.34 is already
   present without upgrading it, and a reader notebook runs there
   (tests/test_colab_pins.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest

from conftest import BOOK_ROOT, MYST_HEADER, REPO, load_book_config

sys.path.insert(0, str(REPO / "tools"))

import build_book  # noqa: E402
import reader_env  # noqa: E402
import reader_notebooks  # noqa: E402

pytestmark = pytest.mark.slow

CONFIG = load_book_config(REPO)
SITE = CONFIG["sphinx"]["config"]["tojupyter_urlpath"]
BOOTSTRAP = (REPO / "chapters" / "_bootstrap_cell.py").read_text().strip("\n")
BUILD_TOOLS = {"sphinx", "myst-nb", "myst-parser", "jupyter-book", "sphinx-tojupyter", "docutils",
               "jupytext", "sphinx-book-theme", "sphinxcontrib-bibtex", "sphinx-exercise"}

# --- MyST that must not survive in a reader notebook's markdown --------------------------------
MYST = {
    "role": re.compile(r"\{[A-Za-z][\w:+.-]*\}`"),                      # {cite}`k`, {glue:text}`x`
    "directive": re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\s*\{[\w:.-]+\}", re.M),  # ```{exercise}, :::{note}
    "directive option": re.compile(r"^:(label|name|class|tags|key):", re.M),
    "target": re.compile(r"^\s*\([\w:.-]+\)=\s*$", re.M),                 # (label)=
    "labelled equation": re.compile(r"\$\$\s*\([\w:.-]+\)"),               # $$ (label)
    "glue": re.compile(r"glue:"),
}


def myst_left(markdown: str) -> list[str]:
    """The kinds of MyST syntax found in `markdown` (math and code spans excluded)."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)   # fenced code shows text verbatim
    return [kind for kind, rx in MYST.items() if rx.search(text)]


def markdown_of(nb) -> str:
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def code_sources(nb) -> list[str]:
    """The code of each code cell, without the `#@title` line of collapsed cells."""
    return [reader_notebooks.without_title(c.source).strip("\n") for c in nb.cells if c.cell_type == "code"]


def is_collapsed(cell) -> bool:
    return (cell.metadata.get("jupyter", {}).get("source_hidden") is True
            and cell.metadata.get("cellView") == "form"
            and re.match(r"#@title \S.{8,}\n", cell.source) is not None)


def test_the_myst_detector_finds_each_kind():
    """The check below can fail: each kind of MyST markup is caught, plain markdown is not."""
    samples = {
        "role": "see {ref}`sec-x` and {cite}`k`",
        "directive": ":::{admonition} Title\nbody\n:::",
        "directive option": "```text\n```\n:label: ex-1",
        "target": "(sec-x)=\n# Title",
        "labelled equation": "$$\nx\n$$ (eq-x)",
        "glue": "the accuracy is {glue:text}`acc:.3f`",
    }
    for kind, text in samples.items():
        assert kind in myst_left(text), (kind, text)
    plain = ("# 1. Title\n\n> **Note**\n>\n> $x_{ij}$ and $$\\sum_i x_i \\tag{1.1}$$\n\n"
             "[Eq. 1.1](https://site/x.html#equation-a) | a | b |\n\n```python\n{glue:text}`x`\n```")
    assert myst_left(plain) == []


# --- 1. each construct, on a probe book -------------------------------------------------------

PROBE = MYST_HEADER + """
(ch-probe)=
# A probe chapter

```{code-cell} ipython3
:tags: [remove-cell]
BOOTSTRAP
```

```{code-cell} ipython3
from dlbook.gluing import glue, glue_number
import matplotlib.pyplot as plt
x = 21
```

Dropout {cite}`hinton2012improving,srivastava2014dropout` is old. See {ref}`sec-second`,
{ref}`the other chapter <ch-other>` and {numref}`fig-probe`.

```{code-cell} ipython3
:tags: [remove-cell]
glue_number("probe_answer", 2 * x)
glue_number("probe_ratio", 0.123456)
```

The answer is {glue:text}`probe_answer` and the ratio is {glue:text}`probe_ratio:.3f`.

$$
y = w x + b
$$ (eq-line)

Equation {eq}`eq-line` is a line; inline $a^2$ costs \\$5.

:::{admonition} Conventions used here
:class: important
The **drop rate** $q$ is zeroed.

- item one
- item two
:::

:::{important}
Read this.
:::

(sec-second)=
## A second section

```{code-cell} ipython3
:tags: [hide-input]
fig, ax = plt.subplots()
ax.plot([1, 2])
glue("probe_fig", fig, display=False)
```

```{glue:figure} probe_fig
:name: fig-probe

A probe figure.
```

```{code-cell} ipython3
:tags: [remove-input]
print("shown without its code")
```

## Exercises

```{exercise} More inputs
:label: ex-more
Repeat for $d$ inputs, using {eq}`eq-line`.
```

```{solution} ex-more
:class: dropdown
The answer is {glue:text}`probe_answer`.
```
""".replace("BOOTSTRAP", BOOTSTRAP)

OTHER = MYST_HEADER + """
(ch-other)=
# Another chapter

Back to {ref}`ch-probe`.
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> nbformat.NotebookNode:
    """The reader notebook of the probe chapter, built as `make book` builds the real ones."""
    root = tmp_path_factory.mktemp("reader_probe")
    for name in ("_config.yml", "references.bib", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    for folder in ("_static", "tools", "binder"):
        shutil.copytree(REPO / folder, root / folder)
    (root / "appendix").mkdir()
    shutil.copy(REPO / "appendix" / "bibliography.md", root / "appendix" / "bibliography.md")
    (root / "chapters").mkdir()
    (root / "chapters" / "01_probe.md").write_text(PROBE)
    (root / "chapters" / "02_other.md").write_text(OTHER)
    (root / "intro.md").write_text("# Probe book\n\nA probe.\n")
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: Chapters\n    numbered: true\n    chapters:\n"
        "      - file: chapters/01_probe\n      - file: chapters/02_other\n"
        "  - caption: Back matter\n    chapters:\n      - file: appendix/bibliography\n")
    build_book.execute_missing(root, jobs=1, timeout=120)
    written = reader_notebooks.build(root, env=build_book.build_env())
    assert [p.relative_to(root / reader_notebooks.OUT).as_posix() for p in written] == [
        "chapters/01_probe.ipynb", "chapters/02_other.ipynb"]
    return nbformat.read(written[0], as_version=4)


def test_probe_has_no_myst_left(probe):
    assert myst_left(markdown_of(probe)) == []


def test_probe_first_cell_is_the_bootstrap(probe):
    assert probe.cells[0].cell_type == "code" and code_sources(probe)[0] == BOOTSTRAP
    assert is_collapsed(probe.cells[0])


def test_probe_glued_values_are_in_the_prose(probe):
    md = markdown_of(probe)
    assert "The answer is 42 and the ratio is 0.123." in md
    assert "The answer is 42." in md  # inside the solution too


def test_probe_citations_are_author_year_links_to_the_bibliography(probe):
    bib = re.escape(SITE + "appendix/bibliography.html#")
    assert re.search(rf"Dropout \(\[Hinton \*et al\.\*, 2012\]\({bib}[\w-]+\), "
                     rf"\[Srivastava \*et al\.\*, 2014\]\({bib}[\w-]+\)\) is old", markdown_of(probe))


def test_probe_cross_references_link_to_the_site(probe):
    md = markdown_of(probe)
    page = SITE + "chapters/01_probe.html"
    assert f"[1.1. A second section]({page}#sec-second)" in md or f"[A second section]({page}#sec-second)" in md
    assert f"[the other chapter]({SITE}chapters/02_other.html#ch-other)" in md
    assert f"[Fig. 1.1]({page}#fig-probe)" in md
    assert f"[Eq. 1.1]({page}#equation-eq-line)" in md
    assert "<a id=" not in md  # no HTML anchors: the targets live on the site


def test_probe_labelled_equation_is_tagged_as_on_the_site(probe):
    assert "$$\ny = w x + b \\tag{1.1}\n$$" in markdown_of(probe)
    assert "inline $a^2$ costs \\$5." in markdown_of(probe)


def test_probe_sections_and_figures_are_numbered_as_on_the_site(probe):
    md = markdown_of(probe)
    assert "# 1. A probe chapter" in md and "## 1.1. A second section" in md
    # the caption as on the site; the image is drawn by the cell that glues it, not copied
    assert re.search(r"\*\*Fig\. 1\.1\*\* A probe figure\.", md)
    assert "data:image" not in md


def test_probe_admonitions_are_block_quotes_with_a_bold_title(probe):
    md = markdown_of(probe)
    assert ("> **Conventions used here**\n>\n> The **drop rate** $q$ is zeroed.\n>\n"
            "> - item one\n> - item two") in md
    assert "> **Important**\n>\n> Read this." in md


def test_probe_exercises_are_headings_and_solutions_collapsed(probe):
    md = markdown_of(probe)
    assert re.search(r"^### Exercise 1\.1 \(More inputs\)\n\nRepeat for \$d\$ inputs, using \[Eq\. 1\.1\]", md, re.M)
    assert re.search(r"<details>\n<summary>Solution to Exercise 1\.1 \(More inputs\)</summary>\n\n"
                     r"The answer is 42\.\n+</details>", md)


def test_probe_hidden_cells_stay_executable_where_they_stood(probe):
    cells = [(c.cell_type, c.source) for c in probe.cells]
    hidden = [i for i, c in enumerate(probe.cells) if c.cell_type == "code" and is_collapsed(c)][1:]
    assert len(hidden) == 3  # the glue cell (remove-cell), the figure (hide-input), the print (remove-input)
    assert cells[hidden[0]][1].startswith("#@title Compute the numbers quoted in the text\n")
    assert cells[hidden[1]][1].startswith("#@title Code of the figure shown below")
    assert cells[hidden[2]][1].startswith("#@title Code of the output shown below")
    shown = [c for i, c in enumerate(probe.cells[1:], 1) if c.cell_type == "code" and i not in hidden]
    assert shown and not any(is_collapsed(c) or c.source.startswith("#@title") for c in shown)
    hidden = [hidden[0], hidden[2]]
    glue_cell = hidden[0]
    assert "glue_number(\"probe_answer\"" in cells[glue_cell][1]
    assert cells[glue_cell - 1][1].startswith("Dropout") and cells[glue_cell + 1][1].startswith("The answer is 42")
    assert 'print("shown without its code")' in cells[hidden[1]][1]
    assert all(not c.get("outputs") for c in probe.cells if c.cell_type == "code")
    assert probe.metadata.kernelspec.name == "python3" and probe.metadata.kernelspec.language == "python"


def test_probe_code_cells_are_the_chapters_in_order(probe):
    from myst_nb.core.read import read_myst_markdown_notebook

    source = read_myst_markdown_notebook(PROBE)
    expected = [c.source.strip("\n") for c in source.cells if c.cell_type == "code"]
    assert code_sources(probe) == expected


# --- 2. the built book -----------------------------------------------------------------------

def chapters() -> list[str]:
    """Docnames of the book's notebook pages (what the launch buttons open)."""
    return reader_notebooks.chapter_docnames(BOOK_ROOT)


CHAPTERS = chapters()
COLAB = BOOK_ROOT / reader_notebooks.OUT


def built_from() -> str | None:
    """The commit the built reader notebooks install (their bootstrap cell names it), if any."""
    path = COLAB / "binder" / "requirements.txt"
    if not path.is_file():
        return None
    m = re.search(r"@([0-9a-f]{40})\s*$", path.read_text())
    return m.group(1) if m else None


# the commit the notebooks were built from (`git rev-parse HEAD` when `make book` ran): the
# reader notebooks and binder/ install the package at that commit
BUILT_FROM = built_from()
HIDDEN = ("remove-cell", "remove-input", "hide-input")
RECORD = "application/papermill.record/"


def reader(doc: str) -> nbformat.NotebookNode:
    path = COLAB / f"{doc}.ipynb"
    assert path.is_file(), f"no reader notebook {path}: run `make book` first"
    return nbformat.read(path, as_version=4)


def glued_text(doc: str) -> list[str]:
    """Each {glue:text} of the chapter as the site prints it (value from the executed notebook)."""
    from dlbook.gluing import plain_text as format_plain_text  # what the book's build prints

    executed = nbformat.read(BOOK_ROOT / "_build" / "jupyter_execute" / f"{doc}.ipynb", as_version=4)
    values = {}
    for cell in executed.cells:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            data = out.get("data", {})
            plain = data.get("application/papermill.record/text/plain", data.get("text/plain"))
            if name and plain is not None:
                values[name] = plain
    source = (BOOK_ROOT / f"{doc}.md").read_text()
    out = []
    for m in re.finditer(r"\{glue:text\}`([^`]+)`", source):
        key, _, fmt = m.group(1).rpartition(":") if ":" in m.group(1) else (m.group(1), "", "s")
        assert key in values, f"{doc}: glue {key!r} not found in the executed notebook"
        out.append((key, format_plain_text(values[key], fmt or "s")))
    return out


def test_every_chapter_has_a_reader_notebook_where_the_launch_buttons_point():
    assert CHAPTERS, "no chapter in _toc.yml"
    for doc in CHAPTERS:
        assert (COLAB / f"{doc}.ipynb").is_file(), f"{doc}: no reader notebook (run `make book`)"
        assert (BOOK_ROOT / "_build" / "html" / reader_notebooks.SITE_COPY / f"{doc}.ipynb").is_file()
    binder = (COLAB / "binder" / "requirements.txt").read_text()
    repo = CONFIG["repository"]
    ref = BUILT_FROM or repo["branch"]
    assert binder.rstrip().endswith(f"dlbook @ git+{repo['url'].rstrip('/')}@{ref}")


@pytest.mark.parametrize("doc", CHAPTERS)
def test_no_myst_in_the_reader_notebook(doc):
    nb = reader(doc)
    found = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and (kinds := myst_left(cell.source)):
            found[i] = (kinds, cell.source[:200])
    assert not found, f"{doc}: MyST markup left in markdown cells {found}"


@pytest.mark.parametrize("doc", CHAPTERS)
def test_every_glued_value_is_in_the_prose(doc):
    md = markdown_of(reader(doc))
    missing = [(key, text) for key, text in glued_text(doc) if text not in md]
    assert not missing, f"{doc}: glued values missing from the reader notebook: {missing}"


@pytest.mark.parametrize("doc", CHAPTERS)
def test_every_code_cell_of_the_chapter_is_there_in_order(doc):
    """Hidden cells included: the notebook recomputes every number the page quotes."""
    from myst_nb.core.read import read_myst_markdown_notebook

    nb = reader(doc)
    source = read_myst_markdown_notebook((BOOK_ROOT / f"{doc}.md").read_text())
    chapter = [c.source.strip("\n") for c in source.cells if c.cell_type == "code"]
    assert nb.cells[0].cell_type == "code" and chapter[0] == BOOTSTRAP
    # the bootstrap is pinned to the commit (below); every other cell is the chapter's own
    assert code_sources(nb)[1:] == chapter[1:]


def test_the_notebooks_name_a_commit_of_this_checkout():
    """binder/ installs the package at a commit: HEAD, or an ancestor of HEAD when commits
    were made after the build (in CI, the build and this test run at one commit)."""
    assert BUILT_FROM, "binder/requirements.txt installs the package at a branch, not at a commit"
    head = reader_notebooks.git_commit(BOOK_ROOT)
    r = subprocess.run(["git", "merge-base", "--is-ancestor", BUILT_FROM, "HEAD"], cwd=BOOK_ROOT)
    assert BUILT_FROM == head or r.returncode == 0, f"{BUILT_FROM} is not HEAD ({head}) nor its ancestor"


@pytest.mark.parametrize("doc", CHAPTERS)
def test_the_bootstrap_installs_the_commit_the_notebooks_were_built_from(doc):
    first = reader(doc).cells[0]
    assert BUILT_FROM, "the book was not built from a git checkout"
    assert code_sources(reader(doc))[0] == reader_notebooks.pin_bootstrap(BOOTSTRAP, BUILT_FROM)
    assert f'"{BUILT_FROM}"' in first.source and "main" not in first.source.split("\n", 1)[1]


def test_pinning_the_bootstrap_can_fail():
    with pytest.raises(ValueError, match="BOOK_BRANCH"):
        reader_notebooks.pin_bootstrap("pip install dlbook", "0" * 40)


def tags_of(doc: str) -> list[list[str]]:
    """Each code cell's tags in the chapter's source, in order."""
    from myst_nb.core.read import read_myst_markdown_notebook

    source = read_myst_markdown_notebook((BOOK_ROOT / f"{doc}.md").read_text())
    return [c.metadata.get("tags", []) for c in source.cells if c.cell_type == "code"]


@pytest.mark.parametrize("doc", CHAPTERS)
def test_cells_hidden_on_the_site_are_collapsed_under_a_title(doc):
    """Jupyter: `jupyter.source_hidden`; Colab: form view (`cellView: form`) under `#@title`."""
    code = [c for c in reader(doc).cells if c.cell_type == "code"]
    tags = tags_of(doc)
    assert len(code) == len(tags)
    wrong = []
    for i, (cell, t) in enumerate(zip(code, tags)):
        hidden = i == 0 or any(h in t for h in HIDDEN)
        if hidden != is_collapsed(cell):
            wrong.append((i, t, cell.source.split("\n", 1)[0][:70]))
        if "remove-output" in t and not cell.metadata.get("jupyter", {}).get("outputs_hidden"):
            wrong.append((i, t, "outputs not collapsed"))
    assert not wrong, f"{doc}: cells collapsed unlike the site: {wrong}"


def test_the_titles_say_what_a_cell_does():
    title = reader_notebooks.cell_title
    assert title("fig, ax = plt.subplots()\nglue('f', fig)", ["remove-cell"]) == "Draw the figure shown on the page"
    assert title("glue_number('n', 3)", ["remove-cell"]) == "Compute the numbers quoted in the text"
    assert title("rows = []\ndisplay(table(rows))", ["remove-input"]).startswith("Code of the table shown below")
    assert title("import json", ["remove-cell"]) == "Imports used by the hidden cells"
    assert title("x = 1", [], bootstrap=True).startswith("Install the book's library")


# --- from the executed book: outputs, stray prints, figures and tables -------------------------

def executed(doc: str) -> nbformat.NotebookNode:
    """The chapter executed by the book build (its outputs as nbval re-executes them)."""
    path = BOOK_ROOT / "_build" / "jupyter_execute" / f"{doc}.ipynb"
    assert path.is_file(), f"{path}: run `make book` first"
    return nbformat.read(path, as_version=4)


def output_texts(outputs) -> list[str]:
    """The text a reader sees of each output (markdown, plain text, streams)."""
    out = []
    for o in outputs:
        if o.get("output_type") == "stream":
            out.append(o.get("text", ""))
        for mime in ("text/markdown", "text/plain"):
            if mime in o.get("data", {}):
                out.append(o["data"][mime])
    return out


@pytest.mark.parametrize("doc", CHAPTERS)
def test_no_myst_in_any_output(doc):
    found = {}
    for i, cell in enumerate(executed(doc).cells):
        for text in output_texts(cell.get("outputs", [])):
            if kinds := myst_left(text):
                found[i] = (kinds, text[:160])
    assert not found, f"{doc}: MyST in outputs {found}"


def stray_outputs(cell) -> list[str]:
    """What a cell shows besides glue records (myst-nb's prefixed, undisplayed mime bundles)."""
    stray = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            stray.append(f"{o.get('name')}: {o.get('text', '')[:80]!r}")
        elif o.get("output_type") in ("display_data", "execute_result"):
            if not all(k.startswith(RECORD) for k in o.get("data", {})):
                stray.append(f"{o['output_type']}: {str(o['data'].get('text/plain', sorted(o['data'])))[:80]!r}")
        elif o.get("output_type") == "error":
            stray.append(f"error: {o.get('ename')}")
    return stray


@pytest.mark.parametrize("doc", CHAPTERS)
def test_cells_hidden_on_the_site_print_nothing(doc):
    """A `remove-cell` cell's output never reaches the page, but a reader running the notebook
    sees it: such cells may only glue (figures and tables they glue are on the page)."""
    code = [c for c in executed(doc).cells if c.cell_type == "code"]
    tags = tags_of(doc)
    found = {i: s for i, (c, t) in enumerate(zip(code, tags))
             if "remove-cell" in t and (s := stray_outputs(c))}
    assert not found, f"{doc}: hidden cells print what the site does not show: {found}"


def test_the_stray_output_check_can_fail():
    printed = nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", text="1\n")])
    glued = nbformat.v4.new_code_cell("glue('x', 1)", outputs=[nbformat.v4.new_output(
        "display_data", data={RECORD + "text/plain": "1"}, metadata={"scrapbook": {"name": "x"}})])
    assert stray_outputs(printed) and not stray_outputs(glued)


def is_table(html: str) -> bool:
    return "<table" in html


def output_counts(outputs, *, reader_glue: bool) -> tuple[int, int]:
    """(figures, tables) shown by `outputs`; with reader_glue, glue records of figures and tables
    count as shown (outside the book build `glue` displays them)."""
    figures = tables = 0
    for o in outputs:
        data = o.get("data", {})
        if o.get("output_type") not in ("display_data", "execute_result"):
            continue
        if any(k.startswith(RECORD) for k in data):
            if not reader_glue:
                continue
            data = {k.removeprefix(RECORD): v for k, v in data.items()}
        if "image/png" in data or "image/svg+xml" in data:
            figures += 1
        elif is_table(data.get("text/html", "")):
            tables += 1
    return figures, tables


def markdown_tables(nb) -> int:
    """Pipe tables in the notebook's markdown cells (one separator row each)."""
    return sum(len(re.findall(r"^\|?\s*:?-{3,}:?\s*\|", c.source, re.M)) for c in nb.cells if c.cell_type == "markdown")


def site_counts(doc: str) -> tuple[int, int]:
    """(figures, tables) in the page's article on the site."""
    text = (BOOK_ROOT / "_build" / "html" / f"{doc}.html").read_text()
    body = re.search(r'<article class="bd-article"[^>]*>(.*?)</article>', text, re.S).group(1)
    return len(re.findall(r"<img\b", body)), len(re.findall(r"<table\b", body))


def reader_counts(nb, tags: list[list[str]], *, reader_glue: bool) -> tuple[int, int]:
    figures, tables = 0, markdown_tables(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell, t in zip(code, tags):
        if "remove-output" in t:
            continue  # collapsed in the notebook, hidden on the site
        f, tb = output_counts(cell.get("outputs", []), reader_glue=reader_glue)
        figures, tables = figures + f, tables + tb
    return figures, tables


@pytest.mark.parametrize("doc", CHAPTERS)
def test_a_readers_run_draws_the_figures_and_tables_of_the_page(doc):
    """Counted on the executed book (the outputs nbval reproduces in the reader's kernel): what
    each cell shows, plus what it glues (drawn by glue outside the book build), plus the
    notebook's markdown tables, equals the page's images and tables. The notebooks actually
    executed below are counted the same way."""
    nb = executed(doc)
    got = reader_counts(nb, tags_of(doc), reader_glue=True)
    got = (got[0], got[1] - markdown_tables(nb) + markdown_tables(reader(doc)))
    assert got == site_counts(doc), f"{doc}: a reader's run draws (figures, tables) {got}, the page shows {site_counts(doc)}"


# --- 3. outside the repository, as Colab runs them ------------------------------------------

@pytest.fixture(scope="session")
def fresh_venv() -> Path:
    """A virtual environment outside the repository's .venv with only `pip install <package>`
    (tools/reader_env.py; built once, kept under _build/, shared with `make test`'s nbval run)."""
    return reader_env.ensure(BOOK_ROOT)


clean_env = reader_env.clean_env


def test_the_package_brings_no_build_tools(fresh_venv):
    """pip install of the package alone: its dependency tree has no Sphinx, myst-nb or jupyter-book."""
    installed = {p["name"].lower().replace("_", "-") for p in json.loads((fresh_venv / "package-list.json").read_text())}
    assert "dlbook" in installed
    assert not installed & BUILD_TOOLS, f"installed with the package: {sorted(installed & BUILD_TOOLS)}"


def test_the_declared_dependencies_hold_no_build_tools():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower() for d in deps}
    assert not names & BUILD_TOOLS


def run_subset(docs: list[str]) -> list[str]:
    """Every chapter with DLBOOK_READER_NOTEBOOKS=all (`make test`); a comma list of stems; else
    (unset, or `fast`) the fastest two."""
    choice = os.environ.get("DLBOOK_READER_NOTEBOOKS", "")
    if choice == "all":
        return docs
    if choice and choice != "fast":
        wanted = set(choice.split(","))
        return [d for d in docs if Path(d).name in wanted or d in wanted]
    seconds = {}
    try:
        from jupyter_cache import get_cache

        for rec in get_cache(str(BOOK_ROOT / build_book.CACHE_SUBDIR)).list_cache_records():
            seconds[Path(rec.uri).resolve()] = (rec.data or {}).get("execution_seconds", 1e9)
    except Exception:  # no cache: fall back to the first two chapters
        pass
    return sorted(docs, key=lambda d: seconds.get((BOOK_ROOT / f"{d}.md").resolve(), 1e9))[:2]


RUN_OUTSIDE = run_subset(CHAPTERS)
RUNNER = r"""
import sys, time, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
t0 = time.perf_counter()
NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()
nbformat.write(nb, sys.argv[1].replace(".ipynb", ".executed.ipynb"))
print(f"{time.perf_counter() - t0:.1f}")
"""


@pytest.mark.parametrize("doc", RUN_OUTSIDE)
def test_reader_notebook_runs_outside_the_repository(doc, fresh_venv, tmp_path):
    """As Colab: a fresh kernel of that environment, a working folder outside the repository."""
    work = tmp_path / "colab"
    work.mkdir()
    nb = work / Path(doc).name
    shutil.copy(COLAB / f"{doc}.ipynb", nb.with_suffix(".ipynb"))
    (work / "run.py").write_text(RUNNER)
    env = clean_env()
    env["HOME"] = str(tmp_path / "home")  # no data cache or settings from this machine's user
    r = subprocess.run([str(fresh_venv / "bin" / "python"), "run.py", nb.with_suffix(".ipynb").name],
                       cwd=work, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{doc} failed outside the repository:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    ran = nbformat.read(nb.with_suffix(".executed.ipynb"), as_version=4)
    myst = {i: myst_left(t) for i, c in enumerate(ran.cells) for t in output_texts(c.get("outputs", []))
            if myst_left(t)}
    assert not myst, f"{doc}: MyST in the outputs of the reader's run: {myst}"
    counts = reader_counts(ran, tags_of(doc), reader_glue=False)
    assert counts == site_counts(doc), f"{doc}: the reader's run drew (figures, tables) {counts}, the page shows {site_counts(doc)}"
    times = BOOK_ROOT / "_build" / "reader-notebook-times"
    times.mkdir(parents=True, exist_ok=True)
    (times / f"{Path(doc).name}.txt").write_text(r.stdout.strip().splitlines()[-1] + "\n")


def test_the_reader_kernel_runs_the_installed_package_not_this_checkout(fresh_venv):
    """`make test` runs strict nbval in the `dlbook-reader` kernel: it must import the package
    installed in the reader's environment even when PYTHONPATH points at this checkout's src/."""
    from jupyter_client.manager import start_new_kernel

    env = dict(os.environ, PYTHONPATH=str(REPO / "src"),
               JUPYTER_PATH=str(reader_env.jupyter_path(BOOK_ROOT)))
    old = dict(os.environ)
    os.environ.update(env)  # kernelspecs are looked up in this process's JUPYTER_PATH
    try:
        km, kc = start_new_kernel(kernel_name=reader_env.KERNEL, env=env)
    finally:
        os.environ.clear()
        os.environ.update(old)
    try:
        reply = []
        kc.execute_interactive("import sys, dlbook, torch; print(sys.prefix, dlbook.__file__, "
                               "torch.get_num_threads())",
                               output_hook=lambda m: reply.append(m["content"].get("text", "")))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    prefix, module, threads = "".join(reply).split()
    assert Path(prefix).resolve() == fresh_venv.resolve()
    assert Path(module).resolve().is_relative_to(fresh_venv.resolve()), module
    assert threads == "1"
