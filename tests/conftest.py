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


def load_book_config(root: Path = BOOK_ROOT) -> dict:
    """The book's _config.yml as a dict."""
    return yaml.safe_load((root / "_config.yml").read_text())


@pytest.fixture(scope="session")
def book_root() -> Path:
    return BOOK_ROOT


@pytest.fixture(scope="session")
def book_config() -> dict:
    return load_book_config()
