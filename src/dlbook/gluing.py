"""Glue computed numbers and tables into the prose (plain Python types only: numpy scalars break `glue:text`).

Used by chapters: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15.
"""

from __future__ import annotations

import numbers
import os

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


# MyST-NB's glue record: the value's display data under this mime prefix, named in the metadata
GLUE_PREFIX = "application/papermill.record/"


def glue(name: str, value, *, display: bool = False) -> None:
    """Glue any displayable `value` (a figure, a table) under `name` for the book build.

    myst-nb is imported here, only when something is glued, and only if installed: the package
    does not depend on it. Without it (a reader notebook in Colab or Binder, whose prose already
    carries the values) nothing is recorded, and `value` is shown only when `display` is true;
    unless DLBOOK_GLUE_RECORD=1 (the test kernel that re-executes the published notebooks in a
    reader's environment), which records the value exactly as myst-nb does.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string")
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if os.environ.get("DLBOOK_GLUE_RECORD") == "1":
            _record(name, value, display=display)
        elif display:
            from IPython.display import display as show

            show(value)
        return
    myst_glue(name, value, display=display)


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
