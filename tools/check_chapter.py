"""Execute and render chapters alone in a throwaway strict book: `check_chapter.py chapters/NN_x.md [...]`.

Prints each chapter's cold execution time; fails (exit != 0) on any failing cell or Sphinx warning.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

import build_book  # noqa: E402

SUPPORT = ["_config.yml", "references.bib", "intro.md", "appendix/bibliography.md", "appendix/glossary.md",
           "appendix/sweeps.md"]
BACK_MATTER = ["appendix/sweeps", "appendix/execution", "appendix/glossary", "appendix/bibliography"]  # execution.md is generated


def scaffold(dest: Path, chapters: list[Path]) -> Path:
    """A minimal book in `dest` with the real config and only `chapters` in its table of contents."""
    (dest / "chapters").mkdir(parents=True, exist_ok=True)
    (dest / "appendix").mkdir(exist_ok=True)
    for name in SUPPORT:
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, dest / name)
    for extra in ("_static", "tools", "src"):  # theme, Sphinx extensions, literalinclude sources
        if (ROOT / extra).is_dir():
            shutil.copytree(ROOT / extra, dest / extra, dirs_exist_ok=True)
    intro = dest / "intro.md"
    intro.write_text("# Throwaway book\n\nChecking chapters in isolation.\n")
    entries = []
    for ch in chapters:
        shutil.copy(ch, dest / "chapters" / ch.name)
        entries.append(f"  - file: chapters/{ch.stem}")
    back = [f"  - file: {n}" for n in BACK_MATTER if n == "appendix/execution" or (dest / f"{n}.md").exists()]
    (dest / "_toc.yml").write_text("format: jb-article\nroot: intro\nsections:\n" + "\n".join(entries + back) + "\n")
    return dest


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("chapters", nargs="+", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the throwaway book and print its path")
    args = ap.parse_args(argv)
    for ch in args.chapters:
        if not ch.exists():
            raise SystemExit(f"no such chapter: {ch}")
    tmp = Path(tempfile.mkdtemp(prefix="dlbook-check-"))
    try:
        scaffold(tmp, [c.resolve() for c in args.chapters])
        t0 = time.perf_counter()
        stats = build_book.execute_missing(tmp, jobs=2, timeout=300)
        for s in stats:
            print(f"COLD EXECUTION {s['chapter']}: {s['seconds']:.1f} s")
        build_book.write_execution_page(tmp)
        build_book.sphinx_build(tmp, "html")
        build_book.publish_executed_notebooks(tmp)
        print(f"OK in {time.perf_counter() - t0:.1f} s; html in {tmp / '_build' / 'html'}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")


if __name__ == "__main__":
    main()
