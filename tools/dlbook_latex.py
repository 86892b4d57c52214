"""The book's PDF layout: a Sphinx extension that acts on the LaTeX builder only (`make pdf`).

Jupyter Book 1's LaTeX support (sphinx-jupyterbook-latex, loaded by Jupyter Book) turns the table of
contents' captions into parts and drops hidden cells; this extension, run after it, makes the PDF
look like the site's book:

1. Sphinx's own `manual` class instead of sphinx-jupyterbook-latex's `jupyterBook` class (which needs
   `bbm` from texlive-fonts-extra, a 1 GB Debian package, and sets a 17.5 cm text width on letter paper).
2. Chapter numbers are the site's: a numbered chapter gets its number from the table of contents as
   tools/dlbook_sphinx.py renumbered it (chapters/06_x.md is chapter 6); unnumbered pages ("How to
   use this book", the back matter) are unnumbered chapters, still listed in the contents.
   Figures and equations are numbered per chapter (Fig. 6.1, Eq. 6.1), as on the site.
3. Code and printed output wrap at the text width (Sphinx's `verbatimforcewraps`): nothing is cut.
4. What a PDF cannot show is dropped or replaced by one short line: interactive widgets, HTML-only
   outputs, the launch and download buttons, collapsed ("hide-input") cell sources.
5. No index (the book has none), so no xindy.
"""

from __future__ import annotations

from docutils import nodes
from sphinx import addnodes
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
% figures: at most 85 % of the text width and 45 % of the page height, centred
\let\dlbookOrigIncludegraphics\sphinxincludegraphics
\renewcommand{\sphinxincludegraphics}[2][]{%
  \dlbookOrigIncludegraphics[#1,width=0.85\linewidth,height=0.45\textheight,keepaspectratio]{#2}}
% long URLs and identifiers break instead of running into the margin
\setlength{\emergencystretch}{3em}
\Urlmuskip=0mu plus 1mu
% --- end tools/dlbook_latex.py -----------------------------------------------------------
"""

LATEX_ELEMENTS = {
    "papersize": "a4paper",
    "pointsize": "10pt",
    # one-sided, chapters open on any page: no blank pages in a PDF read on screen
    "extraclassoptions": "openany,oneside",
    # wrap every code and output line at the text width (break anywhere if it has no space)
    "sphinxsetup": ("verbatimwrapslines=true, verbatimforcewraps=true, verbatimmaxoverfull=0, "
                    "verbatimmaxunderfull=0, verbatimhintsturnover=false, hmargin={2.2cm,2.2cm}, "
                    "vmargin={2.5cm,2.5cm}"),
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


def _builder(app) -> None:
    """After sphinx-jupyterbook-latex's builder-inited handler (which sets 2): numbers per chapter."""
    if app.builder.name == "latex":
        app.config.numfig_secnum_depth = 1


def _raw(tex: str) -> nodes.raw:
    return nodes.raw("", tex + "\n", format="latex")


class ChapterNumbers(SphinxPostTransform):
    """Set LaTeX's chapter counter before each chapter from the site's numbers (root document only)."""

    default_priority = 800  # after sphinx-jupyterbook-latex's LatexRootDocPostTransforms (700)
    builders = ("latex",)

    def run(self, **kwargs) -> None:
        if self.env.docname != self.config.root_doc and \
                self.app.project.path2doc(self.document["source"]) != self.config.root_doc:
            return
        secnums = self.env.toc_secnumbers
        for sof in self.document.findall(addnodes.start_of_file):
            doc = sof.get("docname")
            if doc not in self.env.found_docs:
                continue  # a part made from a caption
            top = (secnums.get(doc) or {}).get("")
            if top:
                tex = rf"\setcounter{{secnumdepth}}{{2}}\setcounter{{chapter}}{{{top[0] - 1}}}"
            else:
                tex = r"\setcounter{secnumdepth}{-1}"
            sof.insert(0, _raw(tex))


def setup(app):
    app.connect("config-inited", _config, priority=900)
    app.connect("builder-inited", _builder, priority=900)
    app.add_post_transform(ChapterNumbers)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
