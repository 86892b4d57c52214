"""Which library modules each chapter runs, and a per-chapter key of the cache on exactly those.

jupyter-cache keys an executed chapter on its code cells only, so an edit to `src/` would leave
stale outputs in the cache. This module finds, with `ast`, the modules under `src/` a chapter
imports (directly, and through the modules' own imports), hashes them with requirements.txt and
pyproject.toml, and drops a chapter's cache records when that hash differs from the one stored
beside the cache (`LIBRARY_DEPS.json`). Used by tools/build_book.py before it executes chapters
and by the Sphinx extension tools/dlbook_sphinx.py (so that a plain `jupyter-book build .`
re-executes the same chapters); only the chapters whose library changed re-execute.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from pathlib import Path

PINNED = ("requirements.txt", "pyproject.toml")
STAMPS = "LIBRARY_DEPS.json"


def _imported_names(tree: ast.AST, package: str | None) -> set[str]:
    """Dotted module names an AST imports (`from a import b` yields a and a.b; relative ones resolved)."""
    names = set()
    for node in ast.walk(tree):  # every import, also those inside functions (lazy imports run too)
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if not package:
                    continue
                parts = package.split(".")
                base = parts[:len(parts) - node.level + 1]
                if not base:
                    continue
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod:
                names.add(mod)
                names.update(f"{mod}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _files_of(name: str, src: Path) -> list[Path]:
    """The files under `src` that importing `name` executes: every package __init__ on the way, the module."""
    parts = name.split(".")
    out = []
    for i in range(1, len(parts) + 1):
        stem = src.joinpath(*parts[:i])
        if (stem / "__init__.py").is_file():
            out.append(stem / "__init__.py")
        elif stem.with_suffix(".py").is_file():
            out.append(stem.with_suffix(".py"))
            break  # a.b.c where a.b is a module: c is an attribute
        else:
            break
    return out


def _package_of(path: Path, src: Path) -> str | None:
    """Dotted package a source file belongs to (for relative imports)."""
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]) or None
    return ".".join(parts[:-1]) or None


def _data_files(init: Path) -> list[Path]:
    """Non-Python files shipped in a package's own folder (style sheets, tables): they may change results."""
    return sorted(p for p in init.parent.iterdir()
                  if p.is_file() and p.suffix not in (".py", ".pyc") and not p.name.startswith("."))


def module_closure(sources: list[str], src: Path) -> list[Path]:
    """Files under `src` that code `sources` imports, directly or transitively, sorted."""
    src = Path(src)
    if not src.is_dir():
        return []
    seen: set[Path] = set()
    todo: list[Path] = []

    def add(names):
        for name in names:
            for f in _files_of(name, src):
                if f not in seen:
                    seen.add(f)
                    todo.append(f)

    for code in sources:
        add(_imported_names(_parse(code), None))
    while todo:
        f = todo.pop()
        add(_imported_names(_parse(f.read_text(encoding="utf-8")), _package_of(f, src)))
    data = {d for f in seen if f.name == "__init__.py" for d in _data_files(f)}
    return sorted(seen | data)


def _parse(code: str) -> ast.AST:
    """AST of a cell or module; IPython magics and shell escapes are blanked first."""
    try:
        return ast.parse(code)
    except SyntaxError:
        lines = ["" if ln.lstrip().startswith(("%", "!")) else ln for ln in code.splitlines()]
        try:
            return ast.parse("\n".join(lines))
        except SyntaxError:
            return ast.parse("")


def read_notebook(path: Path):
    """A chapter as a notebook node (MyST markdown notebook or .ipynb), as MyST-NB reads it."""
    path = Path(path)
    if path.suffix == ".ipynb":
        import nbformat

        return nbformat.read(path, as_version=4)
    from myst_nb.core.read import read_myst_markdown_notebook

    return read_myst_markdown_notebook(path.read_text(encoding="utf-8"), path=path)


def code_cells(path: Path) -> list[str]:
    """Sources of a notebook's code cells."""
    st = Path(path).stat()
    return list(_code_cells(str(path), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=256)
def _code_cells(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:  # parsed once per version of the file
    return tuple(c.source for c in read_notebook(Path(path)).cells if c.cell_type == "code")


def chapter_dependencies(path: Path, root: Path) -> list[Path]:
    """Library files (under root/src) the chapter at `path` runs, plus the pinned requirements."""
    root = Path(root)
    deps = module_closure(code_cells(path), root / "src")
    return deps + [root / p for p in PINNED if (root / p).is_file()]


def chapter_key(path: Path, root: Path) -> str:
    """sha256 over the chapter's library dependencies (names and contents)."""
    root = Path(root)
    h = hashlib.sha256()
    for f in chapter_dependencies(path, root):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


def load_stamps(cache_path: Path) -> dict[str, str]:
    """{chapter path relative to the book: key} as stored beside the cache ({} when none)."""
    try:
        return json.loads((Path(cache_path) / STAMPS).read_text())
    except (OSError, ValueError):
        return {}


def drop_stale(cache_path: Path, chapters: list[Path], root: Path) -> list[Path]:
    """Remove the cache records of chapters whose library dependencies changed; return those chapters.

    A chapter with no stored key counts as changed (its cached outputs cannot be trusted). The new
    keys are stored at once: the cache then lacks the chapter, so whatever builds next executes it
    with the current library.
    """
    from jupyter_cache import get_cache

    root, cache_path = Path(root).resolve(), Path(cache_path)
    cache_path.mkdir(parents=True, exist_ok=True)
    stamp_file = cache_path / STAMPS
    stamps = load_stamps(cache_path)
    cache = get_cache(str(cache_path))
    records = cache.list_cache_records()
    stale = []
    for ch in chapters:
        ch = Path(ch).resolve()
        name = ch.relative_to(root).as_posix()
        key = chapter_key(ch, root)
        if stamps.get(name) == key:
            continue
        pks = {rec.pk for rec in records if Path(rec.uri).resolve() == ch}
        try:  # and a record of the same code cells made under another path
            pks.add(cache.match_cache_notebook(read_notebook(ch)).pk)
        except KeyError:
            pass
        for pk in pks:
            try:
                cache.remove_cache(pk)
            except KeyError:  # already removed with another chapter
                pass
        stamps[name] = key
        stale.append(ch)
    if stale or not stamp_file.exists():
        tmp = stamp_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(stamps, indent=1, sort_keys=True))
        tmp.replace(stamp_file)
    return stale
