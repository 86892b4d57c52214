"""Shared fixtures: the repository root and the book's _config.yml."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))  # the claim registry, tests/claims

REPO = Path(__file__).resolve().parents[1]
# The book whose files and built site (_build/html) the site tests check; another built copy of
# the book can be checked with DLBOOK_BOOK_ROOT=/path/to/copy.
BOOK_ROOT = Path(os.environ.get("DLBOOK_BOOK_ROOT", REPO)).resolve()

# The front matter of a MyST markdown notebook, for the probe chapters that tests write.
MYST_HEADER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


def load_book_config(root: Path = BOOK_ROOT) -> dict:
    """The book's _config.yml as a dict."""
    return yaml.safe_load((root / "_config.yml").read_text())


@pytest.fixture(scope="session")
def book_root() -> Path:
    return BOOK_ROOT


@pytest.fixture(scope="session")
def book_config() -> dict:
    return load_book_config()


def glued(stem: str, root: Path = REPO) -> dict:
    """{name: value} of everything glued in the executed notebook `chapters/<stem>` of the built book.

    Skips the calling test when the book has not been built (make test builds it first).
    """
    import json

    from claims.record import glued_values

    path = root / "_build" / "jupyter_execute" / "chapters" / f"{stem}.ipynb"
    if not path.exists():
        pytest.skip(f"the book has not been built ({path} missing)")
    return glued_values(json.loads(path.read_text()))
