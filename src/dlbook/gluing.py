"""Glue computed numbers and tables into the prose (plain Python types only: numpy scalars break `glue:text`).

Used by chapters: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15.
"""

from __future__ import annotations

import numbers

import numpy as np


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


def glue(name: str, value, *, display: bool = False) -> None:
    """Glue any displayable `value` (a figure, a table) under `name` for the book build.

    myst-nb is imported here, only when something is glued, and only if installed: the package
    does not depend on it. Without it (a reader notebook in Colab or Binder, whose prose already
    carries the values) nothing is recorded, and `value` is shown only when `display` is true.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string")
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if display:
            from IPython.display import display as show

            show(value)
        return
    myst_glue(name, value, display=display)


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
    """A pandas DataFrame from run results (list of dicts), floats formatted for display."""
    import pandas as pd

    if not isinstance(rows, (list, tuple)) or not rows or not all(isinstance(r, dict) for r in rows):
        raise TypeError("rows must be a non-empty list of dicts")
    df = pd.DataFrame([{k: plain(v) if not isinstance(v, str) else v for k, v in r.items()} for r in rows])
    if index is not None:
        df = df.set_index(index)
    for col in df.columns:
        if df[col].dtype.kind == "f":
            df[col] = df[col].map(floatfmt.format)
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
