"""Reader notebooks for Colab and Binder: plain Jupyter notebooks that read like the site.

The paired `chapters/*.ipynb` are MyST sources: opened in Colab they show roles, directives and
empty glue. The reader notebooks are written instead by a Sphinx builder from the *resolved*
document tree (glue filled in, references and numbers resolved), as the QuantEcon lectures
publish theirs. The builder is sphinx-tojupyter's `jupyter` builder; this module subclasses its
translator only where it does not do what a reader needs (see `ReaderTranslator`):

- markdown: admonitions as block quotes with a bold title; exercises as headings, solutions in
  `<details>`; citations as "(Author, year)" and every cross-reference as a link to the published
  site; section and figure numbers as on the site; no HTML anchors;
- code: the cells the site hides (`remove-cell`, `remove-input`) stay executable, collapsed
  (`jupyter.source_hidden` for Jupyter, Colab's form view `cellView: form` under a `#@title` line
  that says what the cell does); `remove-output` cells' outputs collapsed; the bootstrap cell comes
  first and installs the package at the commit the notebooks were built from (`git rev-parse HEAD`);
  no outputs: the reader runs them, and `dlbook.gluing.glue` outside the book build draws every
  figure and table it glues, so the glued figures' images are not copied into the markdown.

Used three ways:
- as a Sphinx extension (`_config.yml`: `sphinx.local_extensions`): registers the `reader` builder,
  and on the site rewrites the launch buttons to open the reader notebooks on the published branch
  (`launch_buttons.notebooks_branch`), and the download menu's `.ipynb` is the reader notebook;
  `{glue:text}` without a format spec prints as `dlbook.gluing.plain_text` (thousands separators);
- `build(root)`, called by tools/build_book.py after the site: writes `_build/colab/`, laid out as
  the launch URLs expect (`chapters/NN_x.ipynb`, `binder/`), and copies the notebooks into the site;
- `python tools/reader_notebooks.py --print-branch`: the branch the launch buttons name (CI pushes
  `_build/colab/` there).
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("_build") / "colab"            # what CI pushes to the notebooks branch
SITE_COPY = "_reader"                     # folder of the site holding the downloadable copies
TITLE = "#@title "                        # Colab's form view: the title line of a collapsed cell
BUILDER = "reader"


def book_config(root: Path = ROOT) -> dict:
    return yaml.safe_load((root / "_config.yml").read_text())


def notebooks_branch(config: dict) -> str:
    """The branch the launch buttons open and CI publishes `_build/colab/` to."""
    branch = config.get("launch_buttons", {}).get("notebooks_branch")
    if not branch:
        raise SystemExit("_config.yml: launch_buttons.notebooks_branch is not set")
    return branch


# --------------------------------------------------------------------------------------------
# Sphinx side (imported only inside a Sphinx build)
# --------------------------------------------------------------------------------------------

def _translator_class():
    from docutils import nodes
    from sphinx.util.math import get_node_equation_number
    from sphinx_tojupyter.writers.translate_all import JupyterTranslator

    admonition_types = ("attention", "caution", "danger", "error", "hint", "important", "note",
                        "tip", "warning", "seealso")

    class ReaderTranslator(JupyterTranslator):
        """sphinx-tojupyter's translator, changed where a reader's notebook needs it."""

        def __init__(self, builder, document):
            super().__init__(builder, document)
            self.docname = builder.docname
            # what Sphinx's HTML builder sets per page; get_node_equation_number reads it
            builder.fignumbers = builder.env.toc_fignumbers.get(self.docname, {})
            self.site = builder.config["tojupyter_urlpath"]
            if not self.site:
                raise ValueError("set tojupyter_urlpath (the site's URL) in _config.yml")
            self.quote_starts: list[int] = []
            self.cite_starts: list[int] = []
            self.in_summary = False
            self.hidden = self._hidden_cells()
            self.bootstrap = None
            if self.hidden and self.hidden[0][2]:  # the first code cell, hidden: the bootstrap
                self.bootstrap = self.hidden.pop(0)[3]

        # -- hidden code cells ---------------------------------------------------------------
        def _hidden_cells(self) -> list[tuple[int, int, bool, str]]:
            """(cell index, first line, is first code cell, source) of each remove-cell cell."""
            from myst_nb.core.read import read_myst_markdown_notebook

            path = Path(self.builder.env.doc2path(self.docname))
            self.source_cells = []
            if path.suffix != ".md":  # the book's pages are MyST notebooks; others get no hidden cells
                return []
            nb = read_myst_markdown_notebook(path.read_text(), add_source_map=True)
            lines = nb.metadata.get("source_map", [0] * len(nb.cells))
            out, first = [], True
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                tags = cell.metadata.get("tags", [])
                if "remove-cell" in tags or "remove_cell" in tags:
                    out.append((i, lines[i] + 1, first, cell.source))
                first = False
            self.source_cells = nb.cells
            return out

        def _code_cell(self, source: str, hidden: bool) -> None:
            self.add_markdown_cell()
            self.output["cells"].append(nbformat_code_cell(source.strip("\n")))

        def _flush_hidden(self, index=None, line=None) -> None:
            while self.hidden and ((index is not None and self.hidden[0][0] < index)
                                   or (line is not None and self.hidden[0][1] < line)):
                self._code_cell(self.hidden.pop(0)[3], hidden=True)

        def dispatch_visit(self, node):
            # hidden cells go back where they stood: before the first block that follows them
            if isinstance(node.parent, (nodes.section, nodes.document)) and not isinstance(node, nodes.Text):
                self._flush_hidden(index=node.get("cell_index") if isinstance(node, nodes.Element) else None,
                                   line=node.line)
            return super().dispatch_visit(node)

        def visit_container(self, node):
            if node.get("nb_element") == "cell_code":
                has_input = any(isinstance(c, nodes.container) and c.get("nb_element") == "cell_code_source"
                                for c in node.children)
                if not has_input:  # remove-input: the site shows only the output
                    self._code_cell(self.source_cells[node["cell_index"]].source, hidden=True)
                    raise nodes.SkipNode
            return super().visit_container(node)

        def depart_document(self, node):
            self.add_markdown_cell()
            self._flush_hidden(index=10**9)
            super().depart_document(node)
            if self.bootstrap is not None:
                pinned = pin_bootstrap(self.bootstrap.strip("\n"), self.builder.config["dlbook_commit"])
                self.output["cells"].insert(0, nbformat_code_cell(pinned))
            for cell in self.output["cells"]:
                cell["metadata"].pop("hide-output", None)
            sources = [c for c in self.source_cells if c.cell_type == "code"]
            code = [c for c in self.output["cells"] if c["cell_type"] == "code"]
            if len(sources) == len(code):  # (tests check the order) collapse what the site hides
                for cell, src in zip(code, sources):
                    collapse(cell, src.metadata.get("tags", []), bootstrap=src is sources[0])

        # -- text ------------------------------------------------------------------------
        def visit_Text(self, node):
            if self.in_math and not self.in_code_block:
                # `$x$`, not tojupyter's `$ x $`: some renderers do not take a space after `$`
                text = "${}$".format(node.astext().strip())
                if self.table_builder:
                    self.table_builder["line_pending"] += text
                else:
                    self.markdown_lines.append(text)
                return
            if self.in_math_block and self.quote_starts:
                # one line, so that the block quote's `> ` prefixes stay outside the TeX
                body = " ".join(node.astext().split())
                self.markdown_lines.append(f"$${body}{self.math_block_label or ''}$$\n\n".replace("\n$$", "$$"))
                self.math_block_label = None
                return
            return super().visit_Text(node)

        def visit_math_block(self, node):
            super().visit_math_block(node)
            if node.get("label"):  # the number the site shows (math_numfig), not tojupyter's guess
                number = get_node_equation_number(self, node)
                self.math_block_label = " \\tag{" + str(number) + "}\n"

        def visit_target(self, node):
            pass  # no HTML anchors: every cross-reference points at the site

        def visit_title(self, node):
            parent = node.parent
            if parent.tagname == "exercise_enumerable_node":
                return  # " (subtitle)" follows the heading's "Exercise N"
            if parent.tagname == "solution_node":
                self.in_summary = True
                self.markdown_lines.append("<summary>")
                return
            if isinstance(parent, nodes.Admonition):
                self.markdown_lines.append("**")
                return
            super().visit_title(node)
            if isinstance(parent, nodes.section) and not self.table_builder:
                numbers = self._secnumber(parent)
                if numbers:
                    self.markdown_lines.append(".".join(map(str, numbers)) + ". ")

        def depart_title(self, node):
            parent = node.parent
            if parent.tagname == "exercise_enumerable_node":
                self.markdown_lines.append("\n\n")
            elif parent.tagname == "solution_node":
                self.in_summary = False
                self.markdown_lines.append("</summary>\n\n")
            elif isinstance(parent, nodes.Admonition):
                self.markdown_lines.append("**\n\n")
            else:
                super().depart_title(node)

        def _secnumber(self, section):
            """The section number the site prints (Sphinx's HTML5Translator.add_secnumber)."""
            secnumbers = self.builder.env.toc_secnumbers.get(self.docname, {})
            anchor = "#" + section["ids"][0] if section["ids"] else ""
            if anchor not in secnumbers:
                anchor = ""
            return secnumbers.get(anchor)

        # -- admonitions: block quotes with a bold title -----------------------------------
        def visit_admonition(self, node):
            self.add_markdown_cell()
            self.quote_starts.append(len(self.markdown_lines))
            if not (node.children and isinstance(node.children[0], nodes.title)):
                self.markdown_lines.append(f"**{node.tagname.capitalize()}**\n\n")

        def depart_admonition(self, node):
            start = self.quote_starts.pop()
            body = "".join(self.markdown_lines[start:]).strip("\n")
            quoted = "\n".join(f"> {ln}".rstrip() for ln in body.split("\n"))
            self.markdown_lines[start:] = [quoted + "\n\n"]
            self.add_markdown_cell()

        # -- exercises and solutions -------------------------------------------------------
        def visit_exercise_enumerable_node(self, node):
            self.add_markdown_cell()
            fignumbers = self.builder.env.toc_fignumbers.get(self.docname, {})
            number = fignumbers.get("exercise", {}).get(node.get("label") or node["ids"][0])
            title = self.builder.config.numfig_format.get("exercise", "Exercise %s")
            title = title % ".".join(map(str, number)) if number else title.replace("%s", "").strip()
            self.markdown_lines.append("#" * min(self.section_level + 1, 6) + " " + title)

        def depart_exercise_enumerable_node(self, node):
            self.add_markdown_cell()

        def visit_solution_node(self, node):
            self.add_markdown_cell()
            self.markdown_lines.append("<details>\n")

        def depart_solution_node(self, node):
            self.markdown_lines.append("\n\n</details>\n")
            self.add_markdown_cell()

        # -- references: everything points at the published site ---------------------------
        def visit_inline(self, node):
            if "bibtex-citation" in node.get("classes", []):
                self.cite_starts.append(len(self.markdown_lines))

        def depart_inline(self, node):
            if "bibtex-citation" in node.get("classes", []):
                start = self.cite_starts.pop()
                text = "".join(self.markdown_lines[start:])
                if text.startswith("[") and text.endswith("]"):
                    text = "(" + text[1:-1] + ")"
                self.markdown_lines[start:] = [text]

        def visit_reference(self, node):
            if not self.in_summary:
                self.markdown_lines.append("[")

        def depart_reference(self, node):
            if self.in_summary:
                return
            self.markdown_lines.append("]({})".format(self.site_url(node)))

        visit_number_reference = visit_reference  # {numref}, and {ref} to an exercise
        depart_number_reference = depart_reference

        def site_url(self, node) -> str:
            if "refuri" in node and not node.get("internal"):
                return node["refuri"]
            if "refuri" in node:
                path, _, fragment = node["refuri"].partition("#")
                path = path.removesuffix(".ipynb").removesuffix(".html")
                doc = posixpath.normpath(posixpath.join(posixpath.dirname(self.docname), path)) if path else self.docname
            else:
                doc, fragment = self.docname, node.get("refid", "")
            return f"{self.site}{doc}.html" + (f"#{fragment}" if fragment else "")

        # -- figures and tables ------------------------------------------------------------
        def visit_image(self, node):
            uri = node.get("uri", "")
            if uri.startswith("data:") or "jupyter_execute" in uri or "/_build/" in uri:
                raise nodes.SkipNode  # an output's image: the notebook's code draws it
            start = len(self.markdown_lines)
            super().visit_image(node)
            if self.tojupyter_images_markdown and len(self.markdown_lines) > start:
                # tojupyter repeats the (base64) URI as the alt text
                image = self.markdown_lines[start]
                uri = image[image.index("](") + 2:-1]
                self.markdown_lines[start] = "![{}]({})".format(node.get("alt", "figure"), uri)

        def visit_caption(self, node):
            super().visit_caption(node)
            figure = node.parent
            if isinstance(figure, nodes.figure) and figure["ids"]:
                numbers = self.builder.env.toc_fignumbers.get(self.docname, {}).get("figure", {})
                number = numbers.get(figure["ids"][0])
                if number:
                    prefix = self.builder.config.numfig_format.get("figure", "Fig. %s")
                    self.markdown_lines.append("**" + prefix % ".".join(map(str, number)) + "** ")

        def depart_figure(self, node):
            self.markdown_lines.append("\n\n")

        def visit_table(self, node):
            self.markdown_lines.append("\n\n")
            super().visit_table(node)

        def depart_table(self, node):
            super().depart_table(node)
            self.markdown_lines.append("\n")

    for name in admonition_types:  # every specific admonition (note, important, ...) likewise
        setattr(ReaderTranslator, f"visit_{name}", ReaderTranslator.visit_admonition)
        setattr(ReaderTranslator, f"depart_{name}", ReaderTranslator.depart_admonition)
    return ReaderTranslator


HIDDEN_TAGS = ("remove-cell", "remove_cell", "remove-input", "remove_input", "hide-input", "hide_input")


def cell_title(source: str, tags: list[str], *, bootstrap: bool = False) -> str:
    """What a cell hidden on the site does, in a few words (its `#@title` in Colab)."""
    if bootstrap:
        return "Install the book's library (Colab, Binder; a no-op where it is installed)"
    shown = not any(t in tags for t in ("remove-cell", "remove_cell"))
    figure = "plt." in source or "fig," in source or "fig =" in source or "kernel_grid(" in source
    tab = "table(" in source or "rows" in source or "DataFrame" in source
    numbers = any(f in source for f in ("glue_number", "glue_values", "glue("))
    if "admonition()" in source:
        return "Show which data the chapter runs on"
    if shown:
        what = "the figure" if figure else "the table" if tab else "the output"
        return f"Code of {what} shown below (hidden on the page)"
    parts = []
    if figure and "glue(" in source:
        parts.append("draw the figure shown on the page")
    elif tab and "glue(" in source:
        parts.append("compute the table shown on the page")
    if numbers and (len(parts) == 0 or "glue_number" in source or "glue_values" in source):
        parts.append("the numbers quoted in the text" if parts and parts[0].startswith("compute")
                     else "compute the numbers quoted in the text")
    if parts:
        text = " and ".join(parts)
        return text[0].upper() + text[1:]
    lines = [ln for ln in source.strip().splitlines() if ln.strip()]
    if lines and lines[0].startswith("#") and not lines[0].startswith("#@"):
        text = lines[0].lstrip("# ").strip()
        return text[0].upper() + text[1:]
    if all(ln.startswith(("import ", "from ")) for ln in lines):
        return "Imports used by the hidden cells"
    if any(ln.startswith("def ") for ln in lines):
        return "Helper functions for the numbers quoted in the text"
    return "Intermediate results for the numbers quoted in the text"


def collapse(cell, tags: list[str], *, bootstrap: bool = False) -> None:
    """Collapse a cell the site hides (Jupyter: source_hidden; Colab: form view under a title)."""
    meta = cell["metadata"]
    if "remove-output" in tags or "remove_output" in tags:
        meta.setdefault("jupyter", {})["outputs_hidden"] = True
    if not (bootstrap or any(t in tags for t in HIDDEN_TAGS)):
        return
    title = cell_title(cell["source"], tags, bootstrap=bootstrap)
    cell["source"] = f"{TITLE}{title}\n{cell['source']}"
    meta.setdefault("jupyter", {})["source_hidden"] = True
    meta["cellView"] = "form"


def without_title(source: str) -> str:
    """A reader notebook cell's code without its `#@title` line (what the chapter has)."""
    first, _, rest = source.partition("\n")
    return rest if first.startswith(TITLE) else source


def git_commit(root: Path) -> str | None:
    """The commit the notebooks are built from (None outside a git checkout)."""
    r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    if r.returncode or not (root / ".git").exists():
        return None
    return r.stdout.strip()


def pin_bootstrap(source: str, commit: str) -> str:
    """The bootstrap cell, installing the package at `commit` instead of the branch."""
    if not commit:
        return source
    pinned = source.replace("BOOK_BRANCH", "BOOK_COMMIT")
    pinned, n = re.subn(r'(BOOK_COMMIT = "[^"]+", )"[^"]+"', rf'\1"{commit}"', pinned)
    if n != 1:
        raise ValueError("chapters/_bootstrap_cell.py: no `BOOK_REPO, BOOK_BRANCH = url, branch` line")
    return pinned


def nbformat_code_cell(source: str):
    import nbformat.v4

    return nbformat.v4.new_code_cell(source)


def _builder_class():
    from sphinx_tojupyter.builders.jupyter import JupyterBuilder
    from sphinx_tojupyter.writers.jupyter import JupyterWriter

    translator = _translator_class()

    class ReaderWriter(JupyterWriter):
        def _identify_translator(self, builder):
            return translator

    class ReaderBuilder(JupyterBuilder):
        """One plain notebook per page, from the resolved doctree (see the module docstring)."""

        name = BUILDER
        _writer_class = ReaderWriter

        def get_outdated_docs(self):
            return list(self.env.found_docs)  # cheap, and glue values change without the source

        def update_Metadata(self, docname, nb):
            import nbformat

            nb.metadata = nbformat.from_dict({
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python"},
                "title": nb.metadata.get("title", ""),
            })
            return nb

        def finish(self):
            pass  # the parent's finish() calls exit(), which would end the Sphinx run early

    return ReaderBuilder


def add_reader_launch_buttons(app, pagename, templatename, context, doctree):
    """Colab and Binder open the reader notebook on the notebooks branch; the download menu's
    `.ipynb` is the reader notebook (one notebook download, the one Colab opens)."""
    buttons = context.get("header_buttons")
    if not buttons:
        return
    config = app.config
    branch = config.html_theme_options.get("launch_buttons", {}).get("notebooks_branch")
    group = next((b for b in buttons if b.get("label") == "launch-buttons"), None)
    if group is None or not branch:
        return
    repo_url = config.html_theme_options["repository_url"].rstrip("/")
    org_repo = repo_url.split("github.com/", 1)[1]
    launch = config.html_theme_options["launch_buttons"]
    ui = {"classic": "tree", "jupyterlab": "lab/tree"}[launch.get("notebook_interface", "classic")]
    path = f"{pagename}.ipynb"
    for b in group["buttons"]:
        if b.get("text") == "Binder":
            b["url"] = f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{org_repo}/{branch}?urlpath={ui}/{path}"
        elif b.get("text") == "Colab":
            b["url"] = f"{launch['colab_url'].rstrip('/')}/github/{org_repo}/blob/{branch}/{path}"
    downloads = next((b for b in buttons if b.get("label") == "download-buttons"), None)
    if downloads is None:
        return
    notebook = next((b for b in downloads["buttons"] if b.get("text") == ".ipynb"), None)
    if notebook is None:
        notebook = {"type": "link", "text": ".ipynb", "icon": "fas fa-code",
                    "label": "download-notebook-button"}
        downloads["buttons"].insert(0, notebook)
    notebook["url"] = context["pathto"](f"{SITE_COPY}/{path}", 1)
    notebook["tooltip"] = "Download this page as a plain Jupyter notebook (the one Colab opens)"


def use_book_number_format() -> None:
    """`{glue:text}` without a format spec prints as dlbook.gluing.plain_text (thousands separators)."""
    import importlib.util

    from myst_nb.core import variables
    # this checkout's dlbook.gluing, whatever dlbook the environment has installed
    path = ROOT / "src" / "dlbook" / "gluing.py"
    if path.is_file():
        spec = importlib.util.spec_from_file_location("_dlbook_gluing", path)
        gluing = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gluing)
    else:  # a throwaway book without the library's source
        from dlbook import gluing
    plain_text = gluing.plain_text
    from myst_nb.ext.glue import crossref, roles

    for module in (variables, crossref, roles):
        module.format_plain_text = plain_text


def setup(app):
    # a kernel that myst-nb starts in this build records glued values (dlbook.gluing.mode)
    os.environ["DLBOOK_BOOK_BUILD"] = "1"
    use_book_number_format()
    app.add_config_value("dlbook_commit", git_commit(Path(app.srcdir)) or "", "")
    app.setup_extension("sphinx_tojupyter")
    app.add_builder(_builder_class())
    # myst-nb picks each output's mime type by builder: the reader builder takes the jupyter one's
    overrides = list(app.config["nb_mime_priority_overrides"])
    overrides += [(BUILDER, mime, prio) for b, mime, prio in overrides if b == "jupyter"]
    app.config["nb_mime_priority_overrides"] = overrides
    app.connect("html-page-context", add_reader_launch_buttons, priority=502)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


# --------------------------------------------------------------------------------------------
# Build step (called by tools/build_book.py after the site)
# --------------------------------------------------------------------------------------------

def chapter_docnames(root: Path) -> list[str]:
    """Pages that are notebooks (what the launch buttons open), as Sphinx docnames."""
    sys.path.insert(0, str(Path(__file__).parent))
    import build_book

    return [p.relative_to(root).with_suffix("").as_posix()
            for p in build_book.toc_files(root) if build_book.is_notebook(p)]


def build(root: Path = ROOT, env: dict | None = None) -> list[Path]:
    """Write the reader notebooks under `_build/colab/` (and into the site); return their paths."""
    root = Path(root).resolve()
    config = book_config(root)
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root), "--builder", "custom",
           "--custom-builder", BUILDER, "-W", "-n", "--keep-going"]
    print("+", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, env=env, cwd=root)
    if r.returncode:
        raise SystemExit(f"reader notebooks: jupyter-book build failed (exit {r.returncode})")
    built = root / "_build" / BUILDER
    out = root / OUT
    shutil.rmtree(out, ignore_errors=True)
    written = []
    for doc in chapter_docnames(root):
        src = built / f"{doc}.ipynb"
        if not src.is_file():
            raise SystemExit(f"reader notebooks: {src} was not written")
        for dest in (out / f"{doc}.ipynb", root / "_build" / "html" / SITE_COPY / f"{doc}.ipynb"):
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
        written.append(out / f"{doc}.ipynb")
    write_binder(root, config, out)
    (out / "README.md").write_text(
        f"# Reader notebooks of *{config.get('title', '')}*\n\n"
        f"Generated by `make book` from {config['repository']['url']} "
        f"(commit `{git_commit(root) or config['repository']['branch']}`); do not edit here.\n"
        "Open a chapter in Colab or Binder from the launch buttons of the book's site.\n")
    print(f"reader notebooks: {len(written)} in {out}")
    return written


def write_binder(root: Path, config: dict, out: Path) -> None:
    """binder/ for the notebooks branch: the CPU-only torch environment plus the book's package."""
    if not (root / "binder").is_dir() or not (root / "pyproject.toml").is_file():
        return  # a throwaway book (tools/check_chapter.py) publishes nothing
    dest = out / "binder"
    dest.mkdir(parents=True, exist_ok=True)
    for f in (root / "binder").iterdir():
        if f.is_file():
            shutil.copy(f, dest / f.name)
    repo = config["repository"]
    package = package_name(root)
    ref = git_commit(root) or repo["branch"]  # the commit the notebooks were built from
    with open(dest / "requirements.txt", "a") as fh:
        fh.write(f"{package} @ git+{repo['url'].rstrip('/')}@{ref}\n")


def package_name(root: Path) -> str:
    import tomllib

    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default=ROOT, type=Path)
    ap.add_argument("--print-branch", action="store_true", help="print launch_buttons.notebooks_branch")
    args = ap.parse_args(argv)
    if args.print_branch:
        print(notebooks_branch(book_config(args.root)))
        return
    build(args.root)


if __name__ == "__main__":
    main()
