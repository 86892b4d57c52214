"""Shared fixtures: the repository root and the book's _config.yml."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

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
    import ast
    import json

    path = root / "_build" / "jupyter_execute" / "chapters" / f"{stem}.ipynb"
    if not path.exists():
        pytest.skip(f"the book has not been built ({path} missing)")
    values = {}
    for cell in json.loads(path.read_text())["cells"]:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            plain = [k for k in out.get("data", {}) if k.endswith("text/plain")]
            if name is not None and plain:
                text = out["data"][plain[0]]
                text = "".join(text) if isinstance(text, list) else text
                try:
                    values[name] = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    values[name] = text
    return values
