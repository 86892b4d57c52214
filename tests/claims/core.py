"""The claim registry's core: a page claim as data, its check, and the mutants that must fail it.

A claim names the glued values of one executed chapter that it compares (tests/conftest.py:
`glued`), a predicate over them, its seed count and its training budget. Per-seed values (glued
with `glue_values`) carry their own spread: a comparison of two methods is a paired difference
of means checked against k standard errors. Every predicate also produces *mutants*: copies of
the values moved to the opposite conclusion, which its check must reject (tests/test_claims.py).
One file per chapter (tests/claims/chNN.py) lists that chapter's claims as `CLAIMS`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np


def _arr(v) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    return a.reshape(-1) if a.ndim else a.reshape(1)


def _mean_se(v) -> tuple[float, float]:
    a = _arr(v)
    return float(a.mean()), (float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else 0.0)


def _diff(a, b, paired: bool) -> tuple[float, float]:
    """Mean of a - b and its standard error: paired when both are per-seed lists of equal length."""
    a, b = _arr(a), _arr(b)
    if paired and a.size == b.size and a.size > 1:
        return _mean_se(a - b)
    (ma, sa), (mb, sb) = _mean_se(a), _mean_se(b)
    return ma - mb, math.hypot(sa, sb)


def _shift(v, by: float):
    """v moved by `by` (a list stays a list of the same length)."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return [float(x) + by for x in v]
    return float(v) + by


@dataclass(frozen=True)
class Outcome:
    ok: bool
    summary: str  # the numbers behind the verdict, for the appendix and failure messages


class Predicate:
    """A check over glued values; subclasses define names(), check() and mutants()."""

    def names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def check(self, v: dict) -> Outcome:
        raise NotImplementedError

    def mutants(self, v: dict) -> list[tuple[str, dict]]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def _ref(v: dict, x):
    return v[x] if isinstance(x, str) else x


@dataclass(frozen=True)
class Greater(Predicate):
    """mean(a) - mean(b) > z standard errors of the difference (paired per seed when possible).

    With z = 0 and scalar operands it is a plain a > b (exact quantities: counts, closed forms).
    """

    a: str
    b: str | float
    z: float = 2.0
    paired: bool = True

    def names(self):
        return tuple(x for x in (self.a, self.b) if isinstance(x, str))

    def check(self, v):
        d, se = _diff(v[self.a], _ref(v, self.b), self.paired)
        ok = d > self.z * se and d > 0
        zs = f", z = {d / se:.1f}" if se > 0 else ""
        return Outcome(bool(ok), f"difference {d:+.4g} ± {se:.2g} (SE{zs})")

    def mutants(self, v):
        if isinstance(self.b, str):
            return [("operands swapped", {**v, self.a: v[self.b], self.b: v[self.a]})]
        d, se = _diff(v[self.a], self.b, self.paired)
        return [("a moved below b", {**v, self.a: _shift(v[self.a], -d - max(se, abs(d), 1e-12))})]

    def describe(self):
        b = self.b if isinstance(self.b, str) else f"{self.b:g}"
        return f"{self.a} > {b}" + (f" by {self.z:g} SE" if self.z else "")


def Less(a, b, z: float = 2.0, paired: bool = True) -> Greater:
    """mean(a) < mean(b) by z standard errors."""
    if isinstance(b, str):
        return Greater(b, a, z, paired)
    return AtMost(a, b)


@dataclass(frozen=True)
class Tie(Predicate):
    """|mean(a) - mean(b)| < z SE: "not resolved at this many seeds" (never "equal")."""

    a: str
    b: str
    z: float = 2.0
    paired: bool = True

    def names(self):
        return (self.a, self.b)

    def check(self, v):
        d, se = _diff(v[self.a], v[self.b], self.paired)
        return Outcome(bool(abs(d) < self.z * se), f"difference {d:+.4g} ± {se:.2g} (SE, z = {d / se if se else float('inf'):.1f})")

    def mutants(self, v):
        d, se = _diff(v[self.a], v[self.b], self.paired)
        gap = (self.z + 1) * se + abs(d) + 1e-12
        return [("a moved up", {**v, self.a: _shift(v[self.a], gap)}),
                ("a moved down", {**v, self.a: _shift(v[self.a], -gap)})]

    def describe(self):
        return f"{self.a} and {self.b} within {self.z:g} SE"


@dataclass(frozen=True)
class Close(Predicate):
    """|mean(a) - ref| <= tol, ref a glued name or a number; tol from a convergence rate or MC error.

    `rel=True` makes tol relative to |ref|.
    """

    a: str
    ref: str | float
    tol: float
    rel: bool = False

    def names(self):
        return tuple(x for x in (self.a, self.ref) if isinstance(x, str))

    def _bound(self, v):
        r = float(np.mean(_arr(_ref(v, self.ref))))
        return r, self.tol * abs(r) if self.rel else self.tol

    def check(self, v):
        r, tol = self._bound(v)
        m = float(np.mean(_arr(v[self.a])))
        return Outcome(bool(abs(m - r) <= tol), f"{m:.6g} vs {r:.6g} (tolerance {tol:.2g})")

    def mutants(self, v):
        r, tol = self._bound(v)
        m = float(np.mean(_arr(v[self.a])))
        return [("moved past the tolerance", {**v, self.a: _shift(v[self.a], r - m + 2 * tol + 1e-12)})]

    def describe(self):
        ref = self.ref if isinstance(self.ref, str) else f"{self.ref:g}"
        return f"{self.a} within {self.tol:g}{' (relative)' if self.rel else ''} of {ref}"


@dataclass(frozen=True)
class Equal(Predicate):
    """a == ref exactly (integer counts, a cited figure's exact value)."""

    a: str
    ref: str | int | float

    def names(self):
        return tuple(x for x in (self.a, self.ref) if isinstance(x, str))

    def check(self, v):
        a, r = v[self.a], _ref(v, self.ref)
        return Outcome(bool(a == r), f"{a!r} vs {r!r}")

    def mutants(self, v):
        a = v[self.a]
        if isinstance(a, str):
            return [("changed", {**v, self.a: a + "?"})]
        return [("off by one unit", {**v, self.a: type(a)(a + 1) if isinstance(a, int) else a * 1.01 + 1e-9})]

    def describe(self):
        return f"{self.a} == {self.ref}"


@dataclass(frozen=True)
class AtLeast(Predicate):
    """Every value of a (a scalar or each seed) >= bound, a number or a glued name."""

    a: str
    bound: str | float

    def names(self):
        return tuple(x for x in (self.a, self.bound) if isinstance(x, str))

    def check(self, v):
        lo, b = float(_arr(v[self.a]).min()), float(_ref(v, self.bound))
        return Outcome(bool(lo >= b), f"smallest {lo:.6g} vs bound {b:.6g}")

    def mutants(self, v):
        lo, b = float(_arr(v[self.a]).min()), float(_ref(v, self.bound))
        return [("dropped below the bound", {**v, self.a: _shift(v[self.a], b - lo - max(abs(b) * 1e-3, 1e-9))})]

    def describe(self):
        return f"every {self.a} >= {self.bound}"


@dataclass(frozen=True)
class AtMost(Predicate):
    """Every value of a <= bound."""

    a: str
    bound: str | float

    def names(self):
        return tuple(x for x in (self.a, self.bound) if isinstance(x, str))

    def check(self, v):
        hi, b = float(_arr(v[self.a]).max()), float(_ref(v, self.bound))
        return Outcome(bool(hi <= b), f"largest {hi:.6g} vs bound {b:.6g}")

    def mutants(self, v):
        hi, b = float(_arr(v[self.a]).max()), float(_ref(v, self.bound))
        return [("raised above the bound", {**v, self.a: _shift(v[self.a], b - hi + max(abs(b) * 1e-3, 1e-9))})]

    def describe(self):
        return f"every {self.a} <= {self.bound}"


@dataclass(frozen=True)
class Between(Predicate):
    """lo <= mean(a) <= hi: an order of magnitude, a range a cited figure must fall in."""

    a: str
    lo: float
    hi: float

    def names(self):
        return (self.a,)

    def check(self, v):
        m = float(np.mean(_arr(v[self.a])))
        return Outcome(bool(self.lo <= m <= self.hi), f"{m:.4g} in [{self.lo:g}, {self.hi:g}]")

    def mutants(self, v):
        m = float(np.mean(_arr(v[self.a])))
        w = self.hi - self.lo
        return [("below", {**v, self.a: _shift(v[self.a], self.lo - m - 0.5 * w - 1e-9)}),
                ("above", {**v, self.a: _shift(v[self.a], self.hi - m + 0.5 * w + 1e-9)})]

    def describe(self):
        return f"{self.a} in [{self.lo:g}, {self.hi:g}]"


@dataclass(frozen=True)
class Monotone(Predicate):
    """a[0] < a[1] < ... (or >) over a sweep, each step resolved by z SE (z = 0: strict order)."""

    seq: tuple[str, ...]
    increasing: bool = True
    z: float = 2.0
    paired: bool = True

    def names(self):
        return tuple(self.seq)

    def check(self, v):
        parts, ok = [], True
        for x, y in zip(self.seq, self.seq[1:]):
            d, se = _diff(v[y], v[x], self.paired)
            d = d if self.increasing else -d
            ok &= d > self.z * se and d > 0
            parts.append(f"{d:+.3g}±{se:.2g}")
        return Outcome(bool(ok), "steps " + ", ".join(parts))

    def mutants(self, v):
        rev = dict(zip(self.seq, [v[n] for n in reversed(self.seq)]))
        return [("order reversed", {**v, **rev})]

    def describe(self):
        return ("increasing" if self.increasing else "decreasing") + " over " + ", ".join(self.seq)


COMPARATIVE = (Greater, Monotone, Tie)
BUDGET_RE = re.compile(r"^(\d+) (steps|epochs)$")


@dataclass(frozen=True)
class Claim:
    """A sentence of the book, the predicate that checks it, and the experiment it rests on.

    `budget` ("400 steps") is the training budget of a claim about trained models; the page words
    it "after 400 steps" unless `doubled` names the same claim at twice the budget (then the
    conclusion is converged in the book's sense). `seeds` counts independent runs (None: exact).
    """

    id: str
    text: str
    check: Predicate
    seeds: int | None = None
    budget: str | None = None
    doubled: str | None = None
    values: tuple[str, ...] = field(default=())  # further glued names the sentence quotes
    costly: bool = False  # a run too costly for 10 seeds: 5 allowed, and the page says so

    def __post_init__(self):
        if not re.fullmatch(r"ch\d\d\.[a-z0-9-]+", self.id):
            raise ValueError(f"claim id must look like 'ch08.some-name', got {self.id!r}")
        if not isinstance(self.check, Predicate):
            raise TypeError(f"check must be a Predicate, got {type(self.check).__name__}")
        if self.budget is not None and not BUDGET_RE.match(self.budget):
            raise ValueError(f"budget must read like '400 steps' or '10 epochs', got {self.budget!r}")
        if self.doubled is not None and self.budget is None:
            raise ValueError(f"{self.id}: a claim with `doubled` needs its own budget")
        if self.seeds is not None and (not isinstance(self.seeds, int) or self.seeds < 1):
            raise ValueError(f"seeds must be a positive int or None, got {self.seeds!r}")
        if isinstance(self.check, COMPARATIVE) and self.seeds is not None:
            least = 5 if self.costly else 10
            if self.seeds < least:
                raise ValueError(f"{self.id}: a comparative claim rests on >= {least} seeds, got {self.seeds}")

    @property
    def chapter(self) -> str:
        return self.id[2:4]

    def budget_units(self) -> tuple[int, str] | None:
        if self.budget is None:
            return None
        n, unit = BUDGET_RE.match(self.budget).groups()
        return int(n), unit




@dataclass(frozen=True)
class Cited:
    """A figure the book quotes from a paper or other software, pinned once against its source.

    `name` is the glue name (or the library constant, see `where`) that carries the figure into
    the prose; `value` is the figure as printed in the source `source` (a references.bib key),
    at `locator` (table, section, page). The harness checks glued == value and that the key exists.
    """

    name: str
    value: float | int | str
    source: str
    locator: str
    where: str = "glue"  # "glue": a glued value of the chapter; "module.attr": a library constant

    def __post_init__(self):
        if self.where != "glue" and "." not in self.where:
            raise ValueError(f"where must be 'glue' or 'module.attribute', got {self.where!r}")
