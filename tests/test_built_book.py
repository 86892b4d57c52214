"""Each chapter's cold execution time, as recorded in the book's cache by the last build, is within budget."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "benchmarks"))

pytestmark = pytest.mark.slow


def test_every_chapter_within_budget():
    import build_book
    from build_time import BUDGET_S
    from jupyter_cache import get_cache

    cache_path = ROOT / build_book.CACHE_SUBDIR
    if not cache_path.exists():
        pytest.skip("the book has not been built (make test builds it first)")
    cache = get_cache(str(cache_path))
    times = {}
    for p in build_book.toc_files(ROOT):
        if build_book.is_notebook(p):
            rec = cache.match_cache_notebook(build_book.read_notebook(p))  # KeyError: stale cache
            times[str(p.relative_to(ROOT))] = rec.data["execution_seconds"]
    assert times
    over = {c: t for c, t in times.items() if t > BUDGET_S.get(c, BUDGET_S["chapter"])}
    assert not over, f"chapters over their execution budget: {over}"


def test_execution_page_reports_every_chapter_and_the_environment():
    import build_book

    page = ROOT / "_build" / "html" / "appendix" / "execution.html"
    if not page.exists():
        pytest.skip("the book has not been built")
    html = page.read_text()
    for p in build_book.toc_files(ROOT):
        if build_book.is_notebook(p):
            assert p.stem in html, f"{p.stem} missing from the execution table"
    for item in ("torch threads", "device", "Data sources used"):
        assert item in html


def test_published_notebooks_carry_outputs():
    """The executed .ipynb readers download from a page has the outputs the page shows (from the cache)."""
    import json

    import build_book
    from jupyter_cache import get_cache

    cache = get_cache(str(ROOT / build_book.CACHE_SUBDIR))
    for p in build_book.toc_files(ROOT):
        if not build_book.is_notebook(p):
            continue
        dl = ROOT / "_build" / "html" / "_sources" / p.relative_to(ROOT).with_suffix(".ipynb")
        if not dl.exists():
            pytest.skip("the book has not been built")
        published = [c.get("outputs", []) for c in json.loads(dl.read_text())["cells"] if c["cell_type"] == "code"]
        rec = cache.match_cache_notebook(build_book.read_notebook(p))
        cached = [c.get("outputs", []) for c in cache.get_cache_bundle(rec.pk).nb.cells if c.cell_type == "code"]
        assert [len(o) for o in published] == [len(o) for o in cached], dl


def test_cached_outputs_are_keyed_on_the_current_library():
    """Each chapter's cache entry was made with the library modules it imports as they are now
    (else the site shows outputs of older code: `make book` executes such chapters again)."""
    import build_book
    import libdeps

    cache_path = ROOT / build_book.CACHE_SUBDIR
    if not (cache_path / libdeps.STAMPS).exists():
        pytest.skip("the book has not been built")
    stamps = libdeps.load_stamps(cache_path)
    stale = [str(p.relative_to(ROOT)) for p in build_book.toc_files(ROOT) if build_book.is_notebook(p)
             and stamps.get(p.relative_to(ROOT).as_posix()) != libdeps.chapter_key(p, ROOT)]
    assert not stale, f"chapters whose library changed since they were executed: {stale}"


def test_no_chapter_prints_warnings_or_errors_to_the_page():
    """A warning in an executed cell shows on the site (stderr output): none may reach it."""
    import json

    built = sorted((ROOT / "_build" / "jupyter_execute" / "chapters").glob("[0-9]*.ipynb"))
    if not built:
        pytest.skip("the book has not been built")
    found = [(p.stem, i, "".join(o.get("text", ""))[:300])
             for p in built for i, cell in enumerate(json.loads(p.read_text())["cells"])
             for o in cell.get("outputs", []) if o.get("name") == "stderr"]
    assert not found, found
