"""The book's claim registry: one module per chapter (chNN.py), each with STEM and CLAIMS.

`registry()` imports them all; tests/test_claims.py checks every claim against the executed
chapters and mutates each one; tools/claims_page.py writes the "Claims and checks" appendix.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from .core import (AtLeast, AtMost, Between, Cited, Claim, Close, Equal, Greater, Less,  # noqa: F401
                   Monotone, Outcome, Predicate, Tie)


def chapter_modules() -> list:
    """The chNN modules, in chapter order."""
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                   if m.name.startswith("ch") and m.name[2:].isdigit())
    return [importlib.import_module(f"{__name__}.{n}") for n in names]


def registry() -> dict[str, tuple[str, Claim]]:
    """{claim id: (chapter stem, claim)} over the whole book; a duplicated id raises."""
    out = {}
    for mod in chapter_modules():
        for c in mod.CLAIMS:
            if c.id in out:
                raise ValueError(f"claim {c.id} is registered twice")
            if c.chapter != mod.__name__.rsplit(".", 1)[1][2:]:
                raise ValueError(f"claim {c.id} is registered in {mod.__name__}")
            out[c.id] = (mod.STEM, c)
    return out


def cited() -> list[tuple[str, "Cited"]]:
    """(chapter stem, figure) for every cited figure (a chapter module's optional CITED list)."""
    return [(mod.STEM, c) for mod in chapter_modules() for c in getattr(mod, "CITED", [])]
