"""The book's Sphinx extension (loaded by _config.yml): chapter numbers from file names, per-chapter cache keys.

1. Chapter numbers are the book's. A numbered chapter whose file is named `NN_slug` is chapter NN
   in the sidebar, its title, its sections (NN.1), figures and equations (Fig. NN.1, Eq. NN.1),
   whatever chapters precede it in the table of contents; a numbered page without such a name
   follows the one before it. Sphinx numbers each numbered toctree from 1 (sphinx-multitoc-numbering
   from where the last one ended); this renumbers after either and numbers the figures again.
2. A chapter whose library modules changed is executed again. jupyter-cache keys a notebook on its
   code cells only; before Sphinx reads the sources, the cache records of the chapters whose
   imported modules under src/ (or requirements.txt, pyproject.toml) changed are dropped
   (tools/libdeps.py) and those chapters are re-read, so MyST-NB executes them again. This is
   what makes a plain `jupyter-book build .` after an edit to src/ as fresh as `make book`.
3. Kernels that MyST-NB starts use encrypted sockets (tools/kernel_transport.py), so the build log
   has no "Kernel is running over TCP without encryption" line per chapter.
4. index.html redirects to the root document as a whole page that names the favicon.
"""

from __future__ import annotations

import copy
import html
import re
import sys
from pathlib import Path

from docutils import nodes

sys.path.insert(0, str(Path(__file__).resolve().parent))

import libdeps  # noqa: E402
from kernel_transport import encrypt_kernel_transport  # noqa: E402

CHAPTER_FILE = re.compile(r"(?:^|/)(\d+)_[^/]+$")


def chapter_number(docname: str) -> int | None:
    """NN for a document named `.../NN_slug`, else None."""
    m = CHAPTER_FILE.search(docname)
    return int(m.group(1)) if m else None


# --- 1. chapter numbers ------------------------------------------------------------------

def renumber(env) -> None:
    """Give each numbered top-level page its chapter number (from its file name) in place."""
    new_top: dict[str, int] = {}
    last, chapter_top = 0, None
    for doc, secnums in env.toc_secnumbers.items():  # in table-of-contents order
        first = secnums.get("") or min((v for v in secnums.values() if v), default=None)
        if not first:
            continue
        if len(first) == 1:  # a chapter (a page at the top of a numbered toctree)
            n = chapter_number(doc)
            last = chapter_top = n if n is not None else last + 1
        if chapter_top is not None:  # a page below a chapter keeps its chapter's number
            new_top[doc] = chapter_top

    def shift(number, top):
        return number if not number else type(number)([top, *number[1:]])

    for doc, top in new_top.items():
        secnums = env.toc_secnumbers[doc]
        for anchor, number in secnums.items():
            secnums[anchor] = shift(number, top)
        for ref in env.tocs[doc].findall(nodes.reference):  # the sidebar and the tables of contents
            if ref.get("secnumber"):
                ref["secnumber"] = shift(ref["secnumber"], top)
        title = env.titles.get(doc)  # previous/next links
        if title is not None and title.get("secnumber"):
            title["secnumber"] = shift(title["secnumber"], top)


def _restore_raw_numbers(app, env) -> list[str]:
    """Before Sphinx numbers: put back last build's numbers as Sphinx made them (before renumber()),
    so that Sphinx compares like with like and rewrites only the pages whose numbers really changed."""
    raw = getattr(env, "dlbook_raw_numbers", None)
    if raw is not None:
        env.toc_secnumbers, env.toc_fignumbers = copy.deepcopy(raw)
    return []


def _chapter_numbers(app, env) -> list[str]:
    """After Sphinx numbered sections and figures: renumber chapters, then number figures again."""
    from sphinx.environment.collectors.toctree import TocTreeCollector

    env.dlbook_raw_numbers = copy.deepcopy((env.toc_secnumbers, env.toc_fignumbers))
    old_sec, old_fig = getattr(env, "dlbook_final_numbers", ({}, {}))
    renumber(env)
    # figures and equations take their chapter's number: number them again from the new sections
    # (assign_figure_numbers does not use its collector; the one Sphinx runs may be a subclass)
    TocTreeCollector.assign_figure_numbers(None, env)
    env.dlbook_final_numbers = copy.deepcopy((env.toc_secnumbers, env.toc_fignumbers))
    changed = {d for d, s in env.toc_secnumbers.items() if s != old_sec.get(d)}
    changed |= {d for d, f in env.toc_fignumbers.items() if f != old_fig.get(d)}
    return sorted(changed)


# --- 2. per-chapter cache keys -----------------------------------------------------------

def _is_notebook(path: Path) -> bool:
    if path.suffix == ".ipynb":
        return True
    if path.suffix != ".md":
        return False
    from myst_nb.core.read import is_myst_markdown_notebook

    return is_myst_markdown_notebook(path.read_text(encoding="utf-8"))


def drop_stale_chapters(app, env, added, changed, removed) -> list[str]:
    """Drop cached outputs of chapters whose library changed; return them so Sphinx re-reads them."""
    cfg = getattr(env, "mystnb_config", None)
    if cfg is None or cfg.execution_mode != "cache":
        return []
    root = Path(app.srcdir)
    chapters = {}
    for doc in sorted(env.found_docs):
        path = Path(env.doc2path(doc))
        if path.is_file() and _is_notebook(path):
            chapters[path.resolve()] = doc
    cache_path = Path(cfg.execution_cache_path)  # relative to the cwd, as MyST-NB reads it
    keyed = libdeps.load_stamps(cache_path)
    stale = libdeps.drop_stale(cache_path, list(chapters), root)
    changed_lib = [chapters[p] for p in stale if p.relative_to(root.resolve()).as_posix() in keyed]
    if changed_lib:
        from sphinx.util import logging

        logging.getLogger(__name__).info("library changed for %s: executing again", ", ".join(changed_lib))
    return [chapters[p] for p in stale if chapters[p] not in added | changed]


# --- 4. the site's index.html -------------------------------------------------------------

def write_index_redirect(app, exception) -> None:
    """index.html as a whole page redirecting to the root document, with the book's favicon.

    (sphinx-external-toc writes a bare `<meta http-equiv="Refresh">` when it is missing: the browser
    then asks for /favicon.ico, a 404 and a console error, whenever it looks before redirecting.)
    """
    root_doc = app.config.root_doc
    if exception is not None or app.builder.name != "html" or root_doc == "index":
        return
    index = Path(app.outdir) / "index.html"
    if index.exists() and "http-equiv=\"Refresh\"" not in index.read_text(encoding="utf-8"):
        return  # a real page
    target, title = f"{root_doc}.html", html.escape(str(app.config.html_title))
    icon = (f'<link rel="icon" href="_static/{Path(app.config.html_favicon).name}">\n'
            if app.config.html_favicon else "")
    index.write_text(f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                     f"<title>{title}</title>\n{icon}"
                     f'<meta http-equiv="Refresh" content="0; url={target}">\n</head>\n'
                     f'<body><p><a href="{target}">{title}</a></p></body>\n</html>\n',
                     encoding="utf-8")


def setup(app):
    encrypt_kernel_transport()
    app.connect("env-get-outdated", drop_stale_chapters)
    # Sphinx's toctree collector numbers sections and figures on env-get-updated (priority 500)
    app.connect("env-get-updated", _restore_raw_numbers, priority=100)
    app.connect("env-get-updated", _chapter_numbers, priority=900)
    app.connect("build-finished", write_index_redirect, priority=400)  # before sphinx-external-toc's
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
