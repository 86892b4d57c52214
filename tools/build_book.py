"""Build the executed book: parallel cold execution into the jupyter-cache, then a strict Sphinx build.

1. Key each chapter's cache entry on the library modules it runs: jupyter-cache keys on code cells
   only, so the records of chapters whose imported modules under src/ (found with `ast`, directly
   or through other modules), requirements.txt or pyproject.toml changed are dropped
   (tools/libdeps.py; the Sphinx extension tools/dlbook_sphinx.py does the same for a plain
   `jupyter-book build`). Only those chapters execute again.
2. Execute every chapter missing from the cache, N at a time (one torch thread each),
   exactly as MyST-NB would read it, and store it in the book's cache.
3. Write the execution-statistics page (appendix/execution.md) and the claims page
   (appendix/claims.md, tools/claims_page.py) from the cache.
4. `jupyter-book build -W -n --keep-going`: any warning or failing cell fails the build.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import libdeps  # noqa: E402
from kernel_transport import encrypt_kernel_transport  # noqa: E402

CACHE_SUBDIR = Path("_build") / ".jupyter_cache"
OLD_STAMP = "LIBRARY_HASH"  # the whole-library key of earlier builds (one edit re-executed everything)


def toc_files(root: Path) -> list[Path]:
    """Every page named in _toc.yml, as a path with its suffix."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    names = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                names.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk({k: v for k, v in toc.items() if k != "root"})
    out = []
    for n in names:
        for suffix in (".md", ".ipynb", ".rst"):
            if (root / (n + suffix)).exists():
                out.append(root / (n + suffix))
                break
    return out


def is_notebook(path: Path) -> bool:
    from myst_nb.core.read import is_myst_markdown_notebook

    return path.suffix == ".md" and is_myst_markdown_notebook(path.read_text())


def read_notebook(path: Path):
    from myst_nb.core.read import read_myst_markdown_notebook

    return read_myst_markdown_notebook(path.read_text(), path=path)


def execute_one(path: str, timeout: int, handoff: str) -> tuple[str, float, str | None]:
    """Execute one chapter in its own kernel (cwd = its folder), write it to `handoff`; return (path, seconds, error)."""
    from jupyter_cache.executors.utils import single_nb_execution

    encrypt_kernel_transport()  # no "Kernel is running over TCP without encryption" per chapter
    nb = read_notebook(Path(path))
    res = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout, allow_errors=False,
                              meta_override=True)
    if res.err is not None:
        return path, res.time, res.exc_string
    from nbformat import write

    write(nb, handoff)  # hand the executed notebook back via disk (notebooks are large to pickle twice)
    return path, res.time, None


def build_env() -> dict:
    env = dict(os.environ)
    # one thread per kernel: oversubscribed torch threads run 15-30x slower on 2 cores
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               DLBOOK_PROGRESS="0", PYDEVD_DISABLE_FILE_VALIDATION="1", PYTHONHASHSEED="0",
               DLBOOK_BOOK_BUILD="1")  # dlbook.gluing.glue records for myst-nb (else it displays)
    return env


def execute_missing(root: Path, jobs: int, timeout: int) -> list[dict]:
    """Execute the chapters the cache lacks, in parallel; raise SystemExit on any failure."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from nbformat import read

    cache_path = root / CACHE_SUBDIR
    (cache_path / OLD_STAMP).unlink(missing_ok=True)
    chapters = [p for p in toc_files(root) if is_notebook(p)]
    keyed = libdeps.load_stamps(cache_path)
    for p in libdeps.drop_stale(cache_path, chapters, root):
        if p.relative_to(root).as_posix() in keyed:
            print(f"library changed for {p.relative_to(root)}: executing it again")
    cache = get_cache(str(cache_path))

    todo = []
    for p in chapters:
        try:
            cache.match_cache_notebook(read_notebook(p))
        except KeyError:
            todo.append(p)
    print(f"{len(todo)} chapter(s) to execute, {jobs} at a time")
    if not todo:
        return []
    os.environ.update(build_env())
    encrypt_kernel_transport()
    failures, stats = [], []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        handoff = {p: root / "_build" / ".executed" / (p.relative_to(root).as_posix().replace("/", "__") + ".ipynb")
                   for p in todo}
        handoff[todo[0]].parent.mkdir(parents=True, exist_ok=True)
        futs = [pool.submit(execute_one, str(p), timeout, str(handoff[p])) for p in todo]
        for p, f in zip(todo, futs):
            path, seconds, err = f.result()
            rel = Path(path).relative_to(root)
            tmp = handoff[p]
            if err:
                failures.append((rel, err))
                print(f"FAILED {rel} after {seconds:.1f} s")
                continue
            nb = read(tmp, as_version=4)
            tmp.unlink()
            cache.cache_notebook_bundle(CacheBundleIn(nb, str(path), data={"execution_seconds": seconds}),
                                        check_validity=False, overwrite=True)
            stats.append({"chapter": str(rel), "seconds": seconds})
            os.utime(path)  # make Sphinx re-read the page so the new outputs reach the site
            print(f"executed {rel} in {seconds:.1f} s")
    if failures:
        for rel, err in failures:
            print(f"\n===== {rel} =====\n{err}", file=sys.stderr)
        raise SystemExit(f"{len(failures)} chapter(s) failed to execute")
    return stats


def write_execution_page(root: Path) -> None:
    """appendix/execution.md: per-chapter times (nb-exec-table), environment, data sources."""
    sys.path.insert(0, str(Path(__file__).parent))
    from execution_page import render

    (root / "appendix").mkdir(exist_ok=True)
    page, text = root / "appendix" / "execution.md", render(root, root / CACHE_SUBDIR)
    if not page.exists() or page.read_text() != text:  # unchanged: Sphinx need not read it again
        page.write_text(text)


def sphinx_build(root: Path, builder: str) -> str:
    """Run the strict Jupyter Book build; print its log as it comes and return it."""
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root), "--builder", builder,
           "-W", "-n", "--keep-going"]
    print("+", " ".join(cmd), flush=True)
    # the cache path in _config.yml is relative to the cwd
    proc = subprocess.Popen(cmd, env=build_env(), cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    log = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        log.append(line)
    if proc.wait():
        raise SystemExit(f"jupyter-book build failed (exit {proc.returncode})")
    return "".join(log)


def publish_executed_notebooks(root: Path) -> int:
    """Write each chapter's executed notebook (outputs from the cache) where readers download it.

    In cache mode MyST-NB writes the notebook it read (no outputs) to jupyter_execute/ and the
    page's download; the outputs live only in the cache, so merge them in here.
    """
    from jupyter_cache import get_cache
    from nbformat import writes

    cache = get_cache(str(root / CACHE_SUBDIR))
    n = 0
    for p in toc_files(root):
        if not is_notebook(p):
            continue
        _, merged = cache.merge_match_into_notebook(read_notebook(p))
        merged.metadata.pop("source_map", None)
        rel = p.relative_to(root).with_suffix(".ipynb")
        text = writes(merged)
        for dest in (root / "_build" / "jupyter_execute" / rel, root / "_build" / "html" / "_sources" / rel):
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text)
        n += 1
    return n


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default=Path(__file__).resolve().parents[1], type=Path)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    ap.add_argument("--builder", default="html")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    t0 = time.perf_counter()
    execute_missing(root, args.jobs, args.timeout)
    t1 = time.perf_counter()
    write_execution_page(root)
    import claims_page  # appendix/claims.md from the claim registry and the executed chapters

    claims_page.write(root, root / CACHE_SUBDIR)
    sphinx_build(root, args.builder)
    publish_executed_notebooks(root)
    if args.builder == "html":  # reader notebooks for Colab/Binder: tools/reader_notebooks.py
        sys.path.insert(0, str(Path(__file__).parent))
        import reader_notebooks

        reader_notebooks.build(root, env=build_env())
    t2 = time.perf_counter()
    print(f"execution {t1 - t0:.1f} s, rendering {t2 - t1:.1f} s; open {root / '_build' / 'html' / 'index.html'}")


if __name__ == "__main__":
    main()
