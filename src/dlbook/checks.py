"""Argument validators shared by the whole library: one per kind of argument, one error style.

A wrong *type* raises TypeError, a wrong *value* ValueError; both name the argument. Used by every
module (core and topic) instead of ad-hoc checks.

Used by chapters: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def integer(name: str, v, *, low: int | None = None, high: int | None = None) -> int:
    """v as an int in [low, high] (either bound optional)."""
    if not _is_int(v):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    v = int(v)
    if (low is not None and v < low) or (high is not None and v > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {v}")
    return v


def positive_int(name: str, v) -> int:
    """v as an int >= 1."""
    return integer(name, v, low=1)


def nonnegative_int(name: str, v) -> int:
    """v as an int >= 0."""
    return integer(name, v, low=0)


def real(name: str, v, *, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False) -> float:
    """v as a float in the interval given by low/high (closed unless *_open)."""
    if not _is_real(v) or isinstance(v, torch.Tensor):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    v = float(v)
    bad = (v != v
           or (low is not None and (v < low or (low_open and v == low)))
           or (high is not None and (v > high or (high_open and v == high))))
    if bad:
        lo = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
        raise ValueError(f"{name} must be in {lo}, {hi}, got {v!r}")
    return v


def positive(name: str, v) -> float:
    """v as a float > 0."""
    return real(name, v, low=0.0, low_open=True)


def nonnegative(name: str, v) -> float:
    """v as a float >= 0."""
    return real(name, v, low=0.0)


def probability(name: str, v, *, allow_one: bool = False) -> float:
    """v as a float in [0, 1) ([0, 1] with allow_one): a drop rate, keep probability, ..."""
    return real(name, v, low=0.0, high=1.0, high_open=not allow_one)


def seed(v, name: str = "seed") -> int:
    """v as a seed: an int in [0, 2**63)."""
    return integer(name, v, low=0, high=2**63 - 1)


def choice(name: str, v, options) -> str:
    """v, which must be one of `options`."""
    options = tuple(options)
    if v not in options:
        raise ValueError(f"{name} must be one of {options}, got {v!r}")
    return v


def boolean(name: str, v) -> bool:
    """v, which must be a bool."""
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(v).__name__}")
    return bool(v)


def tensor(name: str, v, *, ndim: int | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """v, which must be a torch.Tensor (of `ndim` dimensions and `dtype` when given)."""
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
    if ndim is not None and v.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(v.shape)}")
    if dtype is not None and v.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {v.dtype}")
    return v


def same_length(**arrays) -> int:
    """The common length of the named arrays; ValueError naming them if they differ."""
    lengths = {k: len(a) for k, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{' and '.join(lengths)} differ in length: {lengths}")
    return next(iter(lengths.values()))
