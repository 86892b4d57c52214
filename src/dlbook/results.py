"""Runs over seeds and their summaries: mean, standard deviation, standard error, comparisons.

Core module. Every comparative claim in the book ("raises", "faster") rests on `compare`, and
every results table on `summarize`.

Used by chapters: 1, 2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 14, 15.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import checks


def over_seeds(run, seeds, **kwargs) -> list[dict]:
    """[run(seed=s, **kwargs) | {"seed": s} for s in seeds]; `run` returns a dict of results."""
    rows = []
    for s in seeds:
        out = run(seed=checks.seed(s), **kwargs)
        if not isinstance(out, dict):
            raise TypeError(f"run must return a dict, got {type(out).__name__}")
        rows.append(dict(out) | {"seed": int(s)})
    return rows


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (ddof=1) and standard error of n values."""

    mean: float
    sd: float
    se: float
    n: int

    def pm(self, digits: int = 3) -> str:
        """'mean ± sd' rounded to `digits` decimals."""
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f}"


def summary(values) -> Summary:
    """Summary of a 1-D sequence of numbers (sd and se are 0 for a single value)."""
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        raise ValueError("values must not be empty")
    sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return Summary(float(v.mean()), sd, sd / math.sqrt(v.size), int(v.size))


@dataclass(frozen=True)
class Comparison:
    """a - b: difference of means, its standard error (Welch, or paired), and z = diff / se."""

    diff: float
    se: float
    z: float
    paired: bool

    def exceeds(self, k: float = 2.0) -> bool:
        """True when the difference is more than k standard errors above zero."""
        return self.diff > k * self.se


def compare(a, b, *, paired: bool = False) -> Comparison:
    """Compare two sets of per-seed results; `paired` when a[i] and b[i] share seed i."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.size < 2 or b.size < 2:
        raise ValueError(f"a and b need at least 2 values each, got {a.size} and {b.size}")
    if paired:
        if a.size != b.size:
            raise ValueError(f"paired comparison needs equal lengths, got {a.size} and {b.size}")
        s = summary(a - b)
        diff, se = s.mean, s.se
    else:
        diff = float(a.mean() - b.mean())
        se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return Comparison(diff, se, diff / se if se > 0 else math.copysign(math.inf, diff) if diff else 0.0, paired)


def summarize(rows: list[dict], *, by, values, digits: int = 3):
    """A DataFrame with one row per group of `by` and 'mean ± sd (n)' for each of `values`."""
    import pandas as pd

    if not rows:
        raise ValueError("rows must not be empty")
    by = [by] if isinstance(by, str) else list(by)
    values = [values] if isinstance(values, str) else list(values)
    df = pd.DataFrame(rows)
    for col in by + values:
        if col not in df.columns:
            raise ValueError(f"column {col!r} is not in the rows (have {list(df.columns)})")
    out = []
    for key, group in df.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        for v in values:
            row[v] = summary(group[v]).pm(digits)
        row["seeds"] = len(group)
        out.append(row)
    return pd.DataFrame(out).set_index(by)


def stats(rows: list[dict], *, by, value) -> dict:
    """{group key: Summary of `value`} over the rows of each group of `by`."""
    groups: dict = {}
    for r in rows:
        key = r[by] if isinstance(by, str) else tuple(r[b] for b in by)
        groups.setdefault(key, []).append(r[value])
    return {k: summary(v) for k, v in groups.items()}
