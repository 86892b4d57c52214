"""Build the book's PDF, _build/latex/book.pdf, from the executed cache of the site (`make pdf`).

1. Refuse to run when a chapter is missing from the execution cache: the PDF shows the outputs the
   site shows and never executes a cell (run `make book` first).
2. Sphinx's LaTeX builder through Jupyter Book 1 (its configuration from _config.yml, the layout from
   tools/dlbook_latex.py), strict like the site: any warning fails. It keeps its own doctrees
   (_build/.doctrees-latex), so it never invalidates the site's incremental build.
3. latexmk with XeLaTeX (Sphinx's latexmkrc), non-interactive: a LaTeX error fails the build.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import libdeps  # noqa: E402
from build_book import CACHE_SUBDIR, build_env, is_notebook, read_notebook, toc_files  # noqa: E402

TEX = "book.tex"


def uncached_chapters(root: Path) -> list[str]:
    """Chapters with no executed record in the book's cache, or one made with another library."""
    from jupyter_cache import get_cache

    cache = get_cache(str(root / CACHE_SUBDIR))
    stamps = libdeps.load_stamps(root / CACHE_SUBDIR)
    missing = []
    for p in toc_files(root):
        if not is_notebook(p):
            continue
        name = p.relative_to(root).as_posix()
        if stamps.get(name) != libdeps.chapter_key(p, root):
            missing.append(name + " (library changed)")
            continue
        try:
            cache.match_cache_notebook(read_notebook(p))
        except KeyError:
            missing.append(p.relative_to(root).as_posix())
    return missing


def sphinx_latex(root: Path, out: Path) -> None:
    """_build/latex/book.tex and its images, or SystemExit on a warning."""
    code = r"""
import sys
from pathlib import Path
from jupyter_book.sphinx import build_sphinx
root, out = Path(sys.argv[1]), Path(sys.argv[2])
rc = build_sphinx(root, out, noconfig=True, path_config=str(root / "_config.yml"), builder="latex",
                  doctreedir=str(root / "_build" / ".doctrees-latex"), warningiserror=True,
                  keep_going=True, confoverrides={"external_toc_path": "_toc.yml",
                                                  "latex_individualpages": False,
                                                  "nb_execution_raise_on_error": True})
sys.exit(rc if isinstance(rc, int) else 1)
"""
    proc = subprocess.run([sys.executable, "-c", code, str(root), str(out)], cwd=root, env=build_env())
    if proc.returncode:
        raise SystemExit(f"Sphinx's LaTeX build failed (exit {proc.returncode})")


def latexmk(out: Path) -> Path:
    """Run latexmk (XeLaTeX) in `out`; return the PDF."""
    cmd = ["latexmk", "-pdfxe", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
           "-silent", TEX]
    print("+", " ".join(cmd), flush=True)
    env = dict(os.environ, LATEXOPTS="")
    proc = subprocess.run(cmd, cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    if proc.returncode:
        log = out / TEX.replace(".tex", ".log")
        tail = log.read_text(errors="replace").splitlines()[-60:] if log.exists() else []
        print(proc.stdout[-4000:], "\n".join(tail), sep="\n", file=sys.stderr)
        raise SystemExit(f"latexmk failed (exit {proc.returncode}); see {log}")
    pdf = out / TEX.replace(".tex", ".pdf")
    os.utime(pdf)  # up to date with this build even when latexmk found the .tex unchanged
    return pdf


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default=Path(__file__).resolve().parents[1], type=Path)
    args = ap.parse_args(argv)
    root = args.root.resolve()
    missing = uncached_chapters(root)
    if missing:
        raise SystemExit("not in the execution cache (run `make book` first): " + ", ".join(missing))
    out = root / "_build" / "latex"
    t0 = time.perf_counter()
    sphinx_latex(root, out)
    # MyST-NB's cache mode writes each chapter's notebook, without outputs, to jupyter_execute/
    # for every builder: merge the cached outputs in again, as the site build does, or the
    # executed notebooks (read by the tests and downloaded by readers) lose them
    sys.path.insert(0, str(Path(__file__).parent))
    import build_book

    build_book.publish_executed_notebooks(root)
    t1 = time.perf_counter()
    pdf = latexmk(out)
    t2 = time.perf_counter()
    pages = ""
    try:
        info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
        pages = next((ln.split()[-1] + " pages, " for ln in info.splitlines() if ln.startswith("Pages:")), "")
    except OSError:
        pass
    print(f"LaTeX {t1 - t0:.1f} s, XeLaTeX {t2 - t1:.1f} s; {pages}{pdf.relative_to(root)}")


if __name__ == "__main__":
    main()
