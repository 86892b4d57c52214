"""Cold, warm and one-module-edit build times of the whole book, and the slowest chapters.

Copies the working tree (without .venv and _build) to a temporary folder, builds it from an
empty cache (cold), then builds it again unchanged (warm, the no-change rebuild), then edits a
comment in one topic module (src/dlbook/pooling.py by default) and builds again: only the chapters
that import that module, directly or through other modules, execute again.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import build_book  # noqa: E402

# Cold wall seconds at one torch thread, two chapters at a time (as make book runs them): the
# issues' figures, 60 s (chapters 1-4, 9), 90 s (15), 120 s (12, 13) and 180 s (8, 14). Before
# the budget work full builds measured chapter 8 at 196 s, chapter 13 at 118 s and 138 s and
# chapter 14 at 153 s and 188 s, executing side by side. Then chapter 14's ResNets got a grouped
# channels-last stacked forward (about 1.7x faster than vmap), chapter 13 reverse-over-reverse
# Hessian-vector products (2x) and whole-split MLP evaluations not repeated for its loss
# snapshot, chapter 8 whole-split evaluations and a cheaper dropout mask (bit-identical). One
# chapter at a time, on a machine where another build kept the load at 2-3, kernel CPU seconds
# (wall in brackets), before -> after: chapter 13 116 (161) -> 102 (156), chapter 14 146 (154)
# -> 110 (120); chapter 8 after: 169 wall (tools/check_chapter.py, load 1.3-1.6). Full builds
# after the merge: chapter 8 159 s (this checkout) and 194 s (a fresh clone), chapter 13 89 and
# 102 s, chapter 14 116 and 123 s. Chapter 8 is over its issue's 180 s on the slower run: its
# entry keeps the 210 s it had, until its cheat experiment (about 100 s with its 2x twin) is cut.
BUDGET_S = {"chapter": 90, "chapters/08_dropout_real_data.md": 210,
            "chapters/12_inductive_bias.md": 120, "chapters/13_memorization.md": 120,
            "chapters/14_alexnet_resnet.md": 180, "book": 1200, "warm": 10}


def timed_build(root: Path, jobs: int) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    stats = build_book.execute_missing(root, jobs=jobs, timeout=300)
    build_book.write_execution_page(root)
    build_book.sphinx_build(root, "html")
    build_book.publish_executed_notebooks(root)
    return time.perf_counter() - t0, stats


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--edit", default="src/dlbook/pooling.py", help="module to edit for the third build")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="dlbook-bench-"))
    try:
        shutil.copytree(ROOT, tmp, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".venv", "_build", ".git", "__pycache__", "*.egg-info", ".pytest_cache"))
        cold, stats = timed_build(tmp, args.jobs)
        warm, again = timed_build(tmp, args.jobs)
        assert not again, "the warm build re-executed chapters"
        edited = tmp / args.edit
        expected = sorted(str(p.relative_to(tmp)) for p in build_book.toc_files(tmp) if build_book.is_notebook(p)
                          and edited.resolve() in {d.resolve() for d in build_book.libdeps.chapter_dependencies(p, tmp)})
        edited.write_text(edited.read_text() + "\n# an edit for the benchmark: a comment changes the module's key\n")
        edit, rerun = timed_build(tmp, args.jobs)
        rerun_names = sorted(s["chapter"] for s in rerun)
        assert rerun_names == expected, f"editing {args.edit} re-executed {rerun_names}, expected {expected}"
        print("\nchapter                                   cold execution (s)")
        for s in sorted(stats, key=lambda s: -s["seconds"]):
            budget = BUDGET_S.get(s["chapter"], BUDGET_S["chapter"])
            flag = "" if s["seconds"] <= budget else f"  OVER BUDGET ({budget} s)"
            print(f"{s['chapter']:<42}{s['seconds']:>8.1f}{flag}")
        print(f"\ncold build (execute {len(stats)} chapters + render): {cold:.1f} s (budget {BUDGET_S['book']} s)")
        print(f"warm build (no change):                    {warm:.1f} s (budget {BUDGET_S['warm']} s)")
        print(f"edit {args.edit}: {edit:.1f} s; re-executed {len(rerun)} of {len(stats)} chapters: "
              + (", ".join(f"{s['chapter']} ({s['seconds']:.1f} s)" for s in rerun) or "none"))
        print(f"sum of chapter times: {sum(s['seconds'] for s in stats):.1f} s on {args.jobs} parallel kernels")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
