"""dlbook.gluing works without myst-nb (a reader's Colab or Binder kernel) and glues with it (the book)."""

from __future__ import annotations

import sys

import pytest

from dlbook import gluing


@pytest.fixture
def no_myst_nb(monkeypatch):
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # `import myst_nb` now raises ImportError


def test_glue_number_without_myst_nb_returns_the_plain_value(no_myst_nb, capsys):
    assert gluing.glue_number("x", 3) == 3
    gluing.glue("fig", object(), display=False)
    assert capsys.readouterr().out == ""


def test_glue_without_myst_nb_shows_the_value_when_asked(no_myst_nb, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda v: shown.append(v))
    gluing.glue("t", "table", display=True)
    assert shown == ["table"]


def test_glue_with_myst_nb_records_the_value(monkeypatch):
    calls = []
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: calls.append((name, value, display)))
    assert gluing.glue_number("y", 2.5) == 2.5
    assert calls == [("y", 2.5, False)]


def test_importing_the_library_does_not_import_myst_nb(no_myst_nb):
    import importlib

    importlib.reload(gluing)  # would raise if the module imported myst-nb at import time
    with pytest.raises(ValueError, match="name"):
        gluing.glue("", 1)


@pytest.mark.parametrize("value", [3, 0.125, "text", [1, 2]])
@pytest.mark.parametrize("display", [False, True])
def test_recording_without_myst_nb_emits_what_myst_nb_emits(monkeypatch, value, display):
    """DLBOOK_GLUE_RECORD=1 (strict nbval in the reader's kernel) must reproduce myst-nb's record."""
    import myst_nb.ext.glue as reference

    expected = []
    monkeypatch.setattr(reference, "ipy_display", lambda *a, **k: expected.append((a, k)))
    reference.glue("n", value, display=display)
    got = []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: got.append((a, k)))
    monkeypatch.setitem(sys.modules, "myst_nb", None)
    monkeypatch.setenv("DLBOOK_GLUE_RECORD", "1")
    gluing.glue("n", value, display=display)
    assert got == expected and len(got) == 1
