"""The book's PDF layout: a Sphinx extension that acts on the LaTeX builder only (`make pdf`).

Jupyter Book 1's LaTeX support (sphinx-jupyterbook-latex, loaded by Jupyter Book) turns the table of
contents' captions into parts and drops hidden cells; this extension, run after it, makes the PDF
look like the site's book:

1. Sphinx's own `manual` class instead of sphinx-jupyterbook-latex's `jupyterBook` class (which needs
   `bbm` from texlive-fonts-extra, 509 MB to download and 1.4 GB installed, and sets a 17.5 cm
   text width on letter paper).
2. Chapter numbers are the site's: a numbered chapter gets its number from the table of contents as
   tools/dlbook_sphinx.py renumbered it (chapters/06_x.md is chapter 6); unnumbered pages ("How to
   use this book", the back matter) are unnumbered chapters, still listed in the contents.
   Parts are the table of contents' captions, unnumbered (the captions carry "Part I").
   Figures, equations and exercises are numbered per chapter (Fig. 6.1, Eq. 6.1, Exercise 6.1),
   as on the site.
3. Code and printed output wrap at the text width (Sphinx's `verbatimforcewraps`): nothing is cut.
4. What a PDF cannot show does not reach the LaTeX: the launch and download buttons belong to the
   HTML theme; MyST-NB renders each output in a form LaTeX can show (image, LaTeX, Markdown, then
   text: a pandas table prints as its text); sphinx-jupyterbook-latex drops collapsed
   (hide-input/-output/-cell) parts. tests/test_pdf.py checks that no raw markup is left.
5. No index (the book has none), so no xindy.
"""

from __future__ import annotations

from docutils import nodes
from sphinx import addnodes
from sphinx.builders.latex.nodes import thebibliography
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)

PREAMBLE = r"""
% --- tools/dlbook_latex.py ------------------------------------------------------------
% sphinx-jupyterbook-latex wraps code cells in these environments (its own class defines them)
\definecolor{dlbookInputColor}{RGB}{245,245,245}
\definecolor{dlbookInputBorder}{RGB}{204,204,204}
\definecolor{dlbookOutputColor}{RGB}{255,255,255}
\definecolor{dlbookOutputBorder}{RGB}{230,230,230}
\newenvironment{sphinxVerbatimInput}
  {\colorlet{VerbatimColor}{dlbookInputColor}\colorlet{VerbatimBorderColor}{dlbookInputBorder}}{}
\newenvironment{sphinxVerbatimOutput}
  {\colorlet{VerbatimColor}{dlbookOutputColor}\colorlet{VerbatimBorderColor}{dlbookOutputBorder}}{}
% long URLs and identifiers break instead of running into the margin
\setlength{\emergencystretch}{3em}
\Urlmuskip=0mu plus 1mu
% --- end tools/dlbook_latex.py -----------------------------------------------------------
"""

FONTS = r"""
\setmainfont{FreeSerif}[Extension=.otf, UprightFont=*, ItalicFont=*Italic, BoldFont=*Bold,
  BoldItalicFont=*BoldItalic]
\setsansfont{FreeSans}[Extension=.otf, UprightFont=*, ItalicFont=*Oblique, BoldFont=*Bold,
  BoldItalicFont=*BoldOblique]
\setmonofont{DejaVu Sans Mono}[Scale=0.85]
"""

LATEX_ELEMENTS = {
    "papersize": "a4paper",
    "pointsize": "10pt",
    # one-sided, chapters open on any page: no blank pages in a PDF read on screen
    "extraclassoptions": "openany,oneside",
    # wrap every code and output line at the text width (break anywhere if it has no space)
    # wrap every code and output line at the text width: at a space or punctuation where one is
    # near the end, else anywhere (no character may stick out: maxoverfull=0)
    "sphinxsetup": ("verbatimwrapslines=true, verbatimforcewraps=true, verbatimmaxoverfull=0, "
                    "verbatimhintsturnover=false, hmargin={2.2cm,2.2cm}, vmargin={2.5cm,2.5cm}"),
    # Sphinx's XeLaTeX fonts (FreeFont), but a narrower monospace: DejaVu Sans Mono at 85 %
    # fits about 100 characters of code in the text width (FreeMono: 87), so the library's
    # source wraps less often
    "fontpkg": FONTS,
    "printindex": "",
    "makeindex": "",
    "fncychap": r"\usepackage[Sonny]{fncychap}",
}


def _config(app, config) -> None:
    """After sphinx-jupyterbook-latex's config-inited handler: the manual class, our settings."""
    config.latex_theme = "manual"
    config.latex_use_xindy = False
    config.latex_domain_indices = False
    elements = dict(config.latex_elements or {})
    preamble = elements.pop("preamble", "")
    elements.update(LATEX_ELEMENTS)
    elements["preamble"] = preamble + PREAMBLE
    config.latex_elements = elements


def _site_numbers(app) -> None:
    """builder-inited, after sphinx-jupyterbook-latex's: number as the site does (Exercise 6.1, not 6.4.1).

    sphinx-jupyterbook-latex sets numfig_secnum_depth = 2 so that, with parts at the top, LaTeX
    resets its figure and equation counters per chapter; but the environment also numbers
    exercises and figures from it (the numbers sphinx-exercise writes). Keep the site's depth
    while reading (it is also what is pickled: no full re-read next time) and give the LaTeX
    writer depth 2 once the book's doctree is assembled (ChapterNumbers).
    """
    if app.builder.name == "latex":
        app.config.numfig_secnum_depth = 1


def _raw(tex: str) -> nodes.raw:
    return nodes.raw("", tex + "\n", format="latex")


def _bibliography_page(section: nodes.Element) -> list[nodes.Element] | None:
    """The bibliographies of a page that holds nothing else (None for any other page)."""
    bibs, skipped = [], (nodes.title, nodes.target, nodes.raw, nodes.comment)
    for child in section.children:
        if isinstance(child, thebibliography):
            bibs.append(child)
        elif isinstance(child, nodes.container) and not child.astext().strip():
            continue  # what sphinxcontrib-bibtex leaves where the citations were
        elif not (isinstance(child, skipped) or type(child).__name__ == "HiddenCellNode"):
            return None
    return bibs


class ChapterNumbers(SphinxPostTransform):
    """The book's structure in the assembled LaTeX document (the root document only).

    A "Preface" heading over the root page's text; before each chapter, LaTeX's chapter counter
    set from the site's numbers; parts and unnumbered pages without a number; the bibliography
    page replaced by the bibliography alone (LaTeX gives it its own "Bibliography" heading).
    """

    default_priority = 800  # after sphinx-jupyterbook-latex's LatexRootDocPostTransforms (700)
    builders = ("latex",)

    def run(self, **kwargs) -> None:
        if self.app.project.path2doc(self.document["source"]) != self.config.root_doc:
            return
        self.config.numfig_secnum_depth = 2  # LaTeX resets figures and equations per chapter
        secnums = self.env.toc_secnumbers
        for sof in list(self.document.findall(addnodes.start_of_file)):
            section = next(iter(sof.findall(nodes.section)), None)
            if sof.get("docname") in self.env.found_docs and section is not None:
                bibs = _bibliography_page(section)
                if bibs is not None:  # its own title would stand over the bibliography's
                    sof.replace_self(bibs)
        self.document.insert(0, _raw(r"\chapter*{Preface}\addcontentsline{toc}{chapter}{Preface}"
                                     r"\markboth{Preface}{Preface}"))
        for sof in self.document.findall(addnodes.start_of_file):
            doc = sof.get("docname")
            top = (secnums.get(doc) or {}).get("")
            if doc not in self.env.found_docs:  # a part made from a caption ("Part I: ..."): no number
                tex = r"\setcounter{secnumdepth}{-2}"
            elif top:
                tex = rf"\setcounter{{secnumdepth}}{{2}}\setcounter{{chapter}}{{{top[0] - 1}}}"
            else:
                tex = r"\setcounter{secnumdepth}{-1}"
            sof.insert(0, _raw(tex))


def setup(app):
    app.connect("config-inited", _config, priority=900)
    app.connect("builder-inited", _site_numbers, priority=900)
    app.add_post_transform(ChapterNumbers)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
