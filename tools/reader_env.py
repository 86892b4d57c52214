"""The reader's environment: a fresh virtual environment with only `pip install` of the package.

Colab and Binder readers get the library by `pip install` of the package, without the book's
build tools. This builds that environment once under `_build/reader-venv-<key>` (keyed on
pyproject.toml and requirements.txt), adds what Colab has besides (a kernel, a notebook runner)
and registers a Jupyter kernel, `dlbook-reader`, that runs in it with no PYTHONPATH to this
checkout. `make test` runs strict nbval in that kernel, so every published notebook re-executes
where a reader runs it; tests/test_reader_notebooks.py uses the same environment.

    python tools/reader_env.py [BOOK_ROOT]  # builds it if needed; prints its JUPYTER_PATH (only that)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KERNEL = "dlbook-reader"
# a fresh kernel's environment: one torch thread, no progress bars, nothing from this checkout
KERNEL_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "DLBOOK_PROGRESS": "0", "PYDEVD_DISABLE_FILE_VALIDATION": "1", "PYTHONHASHSEED": "0"}


def venv_dir(root: Path = REPO) -> Path:
    key = hashlib.sha256(b"".join((root / f).read_bytes() for f in ("pyproject.toml", "requirements.txt")))
    return root / "_build" / f"reader-venv-{key.hexdigest()[:12]}"


def pins(root: Path = REPO) -> list[str]:
    """requirements.txt's `name==version` lines: constraints only (Colab has its own torch; here the
    book's pinned one, which installs from the local wheel cache instead of a newer download)."""
    lines = [ln.split("#", 1)[0].strip() for ln in (root / "requirements.txt").read_text().splitlines()]
    return [ln for ln in lines if "==" in ln]


def clean_env() -> dict:
    """The environment of a fresh kernel: no PYTHONPATH to this checkout, no virtualenv, and no
    book-build glue mode (a Sphinx build earlier in the same process sets DLBOOK_BOOK_BUILD)."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "DLBOOK_BOOK_BUILD")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(KERNEL_ENV)
    return env


def _pip(py: str, *args: str, constraints: Path) -> None:
    subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c",
                    str(constraints), *args], check=True, env=clean_env(), stdout=sys.stderr)


def source_key(root: Path = REPO) -> str:
    """Hash of the package's own files: the installed copy is refreshed when src/ changes."""
    h = hashlib.sha256()
    for f in sorted((root / "src").rglob("*.py")) + [root / "pyproject.toml", root / "README.md"]:
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _install_package(root: Path, venv: Path, *, deps: bool) -> None:
    """pip install of the package as a reader gets it: its own files only (pyproject, README, src)."""
    pkg = venv / "package"
    shutil.rmtree(pkg, ignore_errors=True)
    pkg.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, pkg / name)
    shutil.copytree(root / "src", pkg / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    extra = () if deps else ("--no-deps", "--force-reinstall")
    _pip(str(venv / "bin" / "python"), *extra, str(pkg), constraints=venv / "constraints.txt")
    (venv / ".package-key").write_text(source_key(root))


def ensure(root: Path = REPO) -> Path:
    """The reader's environment for the book at `root`, built on first use (a lock serialises callers).

    Also records the installed size and the package list, for the tests.
    """
    venv = venv_dir(root)
    done = venv / ".complete"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / ".reader-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            key = venv / ".package-key"
            if not key.exists() or key.read_text() != source_key(root):
                _install_package(root, venv, deps=False)
            return venv
        for old in [venv, *venv.parent.glob("reader-venv-*")]:
            shutil.rmtree(old, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean_env(), stdout=sys.stderr)
        py = str(venv / "bin" / "python")
        (venv / "constraints.txt").write_text("\n".join(pins(root)) + "\n")
        t0 = time.perf_counter()
        _install_package(root, venv, deps=True)
        seconds = time.perf_counter() - t0
        listing = subprocess.run([py, "-m", "pip", "list", "--format", "json"], check=True,
                                 env=clean_env(), capture_output=True, text=True).stdout
        (venv / "package-list.json").write_text(listing)
        site = next((venv / "lib").glob("python3*/site-packages"))
        size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file() and not f.is_symlink())
        (venv / "install-report.json").write_text(json.dumps(
            {"site_packages_bytes": size, "pip_install_seconds": round(seconds, 1)}, indent=1))
        # what Colab and Binder have besides: a kernel and a notebook runner (no build tools)
        _pip(py, "ipykernel", "nbclient", constraints=venv / "constraints.txt")
        spec = venv / "share" / "jupyter" / "kernels" / KERNEL
        spec.mkdir(parents=True, exist_ok=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [py, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (reader's environment)", "language": "python",
            # PYTHONPATH empty: the package comes from the reader's environment, not from src/;
            # DLBOOK_GLUE_RECORD: glued values are recorded as in the book build, to be compared
            "env": {"PYTHONPATH": "", "DLBOOK_GLUE_RECORD": "1", **KERNEL_ENV}}, indent=1))
        done.touch()
    return venv


def jupyter_path(root: Path = REPO) -> Path:
    """What JUPYTER_PATH must hold for Jupyter to find the `dlbook-reader` kernel."""
    return venv_dir(root) / "share" / "jupyter"


if __name__ == "__main__":
    book = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else REPO
    ensure(book)
    print(jupyter_path(book))
