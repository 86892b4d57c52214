"""dlbook.gluing: outside the book build (Colab, Binder, Jupyter) glue shows the figures and tables it
glues and nothing else; in the book build (DLBOOK_BOOK_BUILD=1) it is myst-nb's glue; in the nbval
kernel (DLBOOK_GLUE_RECORD=1) it records exactly what myst-nb records."""

from __future__ import annotations

import sys

import pytest

from dlbook import gluing


@pytest.fixture(autouse=True)
def reader_mode(monkeypatch):
    """Outside the book build unless a test says otherwise (build_book sets the variable in-process)."""
    monkeypatch.delenv("DLBOOK_BOOK_BUILD", raising=False)
    monkeypatch.delenv("DLBOOK_GLUE_RECORD", raising=False)


@pytest.fixture
def no_myst_nb(monkeypatch):
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # `import myst_nb` now raises ImportError


def test_glue_number_outside_the_book_returns_the_plain_value_and_shows_nothing(no_myst_nb, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda v: shown.append(v))
    assert gluing.glue_number("x", 3) == 3
    assert gluing.glue_values("v", [1, 2]) == [1.0, 2.0]
    assert shown == []


def test_glue_outside_the_book_shows_figures_and_tables(no_myst_nb, monkeypatch):
    """A reader running the notebook sees every figure and table the page shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda v: shown.append(v))
    fig, _ = plt.subplots()
    df = gluing.glue_table("t", [{"a": 1.5, "n": 43648}])
    gluing.glue("fig", fig, display=False)
    plt.close(fig)
    assert shown == [df, fig]
    assert df["n"].tolist() == ["43,648"]


def test_glue_without_myst_nb_shows_the_value_when_asked(no_myst_nb, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda v: shown.append(v))
    gluing.glue("t", "table", display=True)
    assert shown == ["table"]


def test_glue_in_the_book_build_is_myst_nbs(monkeypatch):
    monkeypatch.setenv("DLBOOK_BOOK_BUILD", "1")
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


@pytest.mark.parametrize("text, spec, expected", [
    ("43648", "", "43,648"), ("43648", "s", "43,648"), ("-123456", "", "-123,456"),
    ("2012", "", "2012"), ("999", "", "999"), ("True", "", "True"),
    ("96.17145669800213", "", "96.17"), ("2.766666666666673", "", "2.767"), ("0.5", "", "0.5"),
    ("1e-05", "", "1e-05"), ("123456.789123456", "", "123,457"), ("'abc'", "", "abc"),
    ("43648", "d", "43648"), ("0.123456", ".3f", "0.123"), ("0.25", ".0%", "25%"),
])
def test_plain_text_formats_as_the_page_prints(text, spec, expected):
    """{glue:text} formatting: myst-nb's with a spec; without one, thousands separators and no raw floats."""
    from myst_nb.core.variables import format_plain_text

    assert gluing.plain_text(text, spec) == expected
    if spec not in ("", "s"):
        assert gluing.plain_text(text, spec) == format_plain_text(text, spec)


def test_table_separates_large_integers_in_mixed_columns_too():
    """A column of counts and "-" is object-typed: its large integers still get separators, small
    ones (years) and strings stay as they are."""
    df = gluing.table([{"n": 143667240, "year": 2012}, {"n": "-", "year": 2015}, {"n": 9192, "year": 2016}])
    assert df["n"].tolist() == ["143,667,240", "-", 9192]
    assert df["year"].tolist() == [2012, 2015, 2016]
