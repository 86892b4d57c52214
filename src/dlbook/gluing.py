"""Glue computed numbers and tables into the prose (plain Python types only: numpy scalars break `glue:text`).

Used by chapters: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15.
"""

from __future__ import annotations

import numbers
import os

import numpy as np


def plain_text(text: str, spec: str = "") -> str:
    """A glued value's text/plain as the page prints it: myst-nb's `{glue:text}` formatting, except
    that without a format spec (myst-nb's default, "s") an integer of five digits or more gets
    thousands separators (43,648; 2012 stays) and a float with more than six decimals is rounded
    to four significant digits (raw floats never reach a page)."""
    from ast import literal_eval

    try:
        value = literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if spec in ("", "s"):
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}" if abs(value) >= 10_000 else str(value)
        if isinstance(value, float):
            digits = repr(value).partition(".")[2]
            if "e" not in digits and len(digits) <= 6:
                return str(value)
            return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
        return str(value)
    kind = spec[-1]
    if kind == "s":
        value = str(value)
    elif kind in "bcdoxX":
        value = int(value)
    elif kind in "eEfFgGn%":
        value = float(value)
    return format(value, spec)


def plain(value):
    """A plain Python int/float/str/bool from a numpy or torch scalar (0-d array or tensor)."""
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.ndim != 0:
            raise ValueError(f"value must be a scalar, got an array of shape {value.shape}")
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"value must be a number, bool or str, got {type(value).__name__}")


# MyST-NB's glue record: the value's display data under this mime prefix, named in the metadata
GLUE_PREFIX = "application/papermill.record/"


def mode() -> str:
    """How `glue` acts here: "book", "record" or "reader" (see `glue`)."""
    if os.environ.get("DLBOOK_GLUE_RECORD") == "1":
        return "record"
    if os.environ.get("DLBOOK_BOOK_BUILD") == "1":
        return "book"
    return "reader"


def is_number(value) -> bool:
    """True for what the prose quotes (numbers, strings, lists of them); False for figures, tables."""
    if isinstance(value, (numbers.Number, str, bool, np.generic)):
        return True
    return isinstance(value, (list, tuple)) and all(is_number(v) for v in value)


def glue(name: str, value, *, display: bool = False) -> None:
    """Glue any displayable `value` (a figure, a table) under `name` for the book build.

    - "book" (DLBOOK_BOOK_BUILD=1, set by tools/build_book.py and the book's Sphinx extension):
      myst-nb's glue, imported only here (the package does not depend on it);
    - "record" (DLBOOK_GLUE_RECORD=1: the nbval kernel that re-executes the published notebooks
      in a reader's environment): the value recorded exactly as myst-nb does;
    - "reader" (anywhere else: Colab, Binder, Jupyter): a figure or table is shown where it is
      computed, whatever `display` says (the page would show it); numbers are shown only when
      `display` is true (the prose already carries them).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string")
    how = mode()
    if how == "book":
        try:  # optional: the [book] extra
            from myst_nb import glue as myst_glue
        except ImportError as err:
            raise RuntimeError("DLBOOK_BOOK_BUILD=1 needs myst-nb (pip install 'dlbook[book]')") from err
        myst_glue(name, value, display=display)
    elif how == "record":
        _record(name, value, display=display)
    elif display or not is_number(value):
        from IPython.display import display as show

        show(value)


def _record(name: str, value, *, display: bool) -> None:
    """Display `value` as MyST-NB's glue does: its mime bundle, prefixed unless displayed."""
    from IPython.core.formatters import format_display_data
    from IPython.display import display as show

    bundle, metadata = format_display_data(value)
    prefix = "" if display else GLUE_PREFIX
    metadata["scrapbook"] = {"name": name, "mime_prefix": prefix}
    show({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


def glue_number(name: str, value, *, display: bool = False):
    """Glue `value` under `name` as a plain Python number; returns the plain value."""
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string")
    v = plain(value)
    glue(name, v, display=display)
    return v


def glue_numbers(prefix: str = "", /, **values) -> dict:
    """Glue several numbers at once as `prefix + key`; returns the plain values."""
    return {k: glue_number(prefix + k, v) for k, v in values.items()}


def table(rows: list[dict], *, floatfmt: str = "{:.4g}", index: str | None = None):
    """A pandas DataFrame from run results (list of dicts), floats formatted for display and
    integers of five digits or more with thousands separators (years stay 2012)."""
    import pandas as pd

    if not isinstance(rows, (list, tuple)) or not rows or not all(isinstance(r, dict) for r in rows):
        raise TypeError("rows must be a non-empty list of dicts")
    df = pd.DataFrame([{k: plain(v) if not isinstance(v, str) else v for k, v in r.items()} for r in rows])
    if index is not None:
        df = df.set_index(index)
    for col in df.columns:
        if df[col].dtype.kind == "f":
            df[col] = df[col].map(floatfmt.format)
        elif df[col].dtype.kind in "iu" and (df[col].abs() >= 10_000).any():
            df[col] = df[col].map("{:,}".format)
        elif df[col].dtype.kind == "O":  # mixed, e.g. counts and "-": each large int separated
            df[col] = df[col].map(lambda v: f"{v:,}" if type(v) is int and abs(v) >= 10_000 else v)
    return df


def glue_table(name: str, rows: list[dict], *, floatfmt: str = "{:.4g}", index: str | None = None, display: bool = False):
    """Glue a results table (see `table`) under `name`; returns the DataFrame."""
    df = table(rows, floatfmt=floatfmt, index=index)
    glue(name, df, display=display)
    return df


def glue_values(name: str, values) -> list:
    """Glue a 1-D sequence of numbers (e.g. one result per seed) as a list of plain floats, not displayed.

    The page does not show it; tests read it back from the executed notebook to assert a claim
    with its spread (tests/conftest.py: `glued`).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string")
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence, got shape {arr.shape}")
    out = [float(v) for v in arr]
    glue(name, out, display=False)
    return out
