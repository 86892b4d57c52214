"""The claim registry (tests/claims/): every page claim holds on the executed book, goes red when
its values are moved to the opposite conclusion, names its budget, and is marked in its chapter.

A claim's check runs on the glued values of the executed chapter (make test builds the book
first). Its mutants are the same values swapped or shifted to the opposite conclusion: a check
that stays green on any mutant cannot fail, and is reported by the claim's id.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from claims import (AtLeast, AtMost, Between, Claim, Close, Equal, Greater, Less, Monotone,
                    Tie, cited, registry)
from conftest import REPO, glued

REGISTRY = registry()
IDS = sorted(REGISTRY)
MARKER = re.compile(r"^% claim: (ch\d\d\.[a-z0-9-]+)\s*$", re.M)


def values_of(claim_id: str) -> dict:
    stem, claim = REGISTRY[claim_id]
    v = glued(stem)
    missing = [n for n in claim.check.names() + claim.values if n not in v]
    assert not missing, f"{claim_id}: {stem} glues no value named {missing}"
    return v


@pytest.mark.parametrize("claim_id", IDS)
def test_claim_holds_on_the_executed_book(claim_id):
    stem, claim = REGISTRY[claim_id]
    out = claim.check.check(values_of(claim_id))
    assert out.ok, f"{claim_id} ({stem}) is false on the executed book: {out.summary}\n  {claim.text}"


@pytest.mark.parametrize("claim_id", IDS)
def test_claim_check_fails_on_every_mutant(claim_id):
    _, claim = REGISTRY[claim_id]
    v = values_of(claim_id)
    survivors = [what for what, mutant in claim.check.mutants(v) if claim.check.check(mutant).ok]
    assert not survivors, f"{claim_id}: its check stays green when {survivors} ({claim.check.describe()})"


DOUBLED = sorted(i for i in IDS if REGISTRY[i][1].doubled)


@pytest.mark.parametrize("claim_id", DOUBLED)
def test_a_converged_claim_holds_at_twice_its_budget(claim_id):
    _, claim = REGISTRY[claim_id]
    assert claim.doubled in REGISTRY, f"{claim_id}: doubled names no registered claim {claim.doubled}"
    _, twin = REGISTRY[claim.doubled]
    (n, unit), (m, unit2) = claim.budget_units(), twin.budget_units() or (None, None)
    assert (m, unit2) == (2 * n, unit), f"{claim_id}: {twin.id} runs {twin.budget}, not twice {claim.budget}"
    assert type(twin.check) is type(claim.check), f"{claim_id}: {twin.id} checks something else"
    out = twin.check.check(values_of(twin.id))
    assert out.ok, f"{claim_id} changes at twice its budget: {out.summary}"


def test_a_claim_not_shown_at_twice_its_budget_is_not_called_converged():
    for cid, (_, c) in REGISTRY.items():
        if c.budget and not c.doubled and not any(REGISTRY[o][1].doubled == cid for o in REGISTRY):
            assert "converge" not in c.text.lower(), f"{cid} says converged but is shown at one budget"


def chapter_markers() -> dict[str, list[str]]:
    out = {}
    for md in sorted((REPO / "chapters").glob("[0-9][0-9]_*.md")):
        out[md.stem] = MARKER.findall(md.read_text())
    return out


def test_every_claim_is_marked_once_in_its_chapter_and_every_marker_is_registered():
    marks = chapter_markers()
    for stem, ids in marks.items():
        assert len(ids) == len(set(ids)), f"{stem} marks a claim twice"
        for cid in ids:
            assert cid in REGISTRY, f"{stem} marks {cid}, which is not registered"
            assert REGISTRY[cid][0] == stem, f"{stem} marks {cid}, a claim of {REGISTRY[cid][0]}"
    marked = {cid for ids in marks.values() for cid in ids}
    unmarked = sorted(set(IDS) - marked)
    assert not unmarked, f"registered claims with no '% claim: id' line in their chapter: {unmarked}"


# --- the harness itself: each predicate is green on a true case and red on its own mutants ------
SEEDS = [0.01 * i for i in range(10)]
CASES = [
    (Greater("a", "b"), {"a": [1 + s for s in SEEDS], "b": [s for s in SEEDS]}),
    (Greater("a", 0.5, z=0), {"a": 0.7}),
    (Less("a", "b"), {"a": [s for s in SEEDS], "b": [1 + s for s in SEEDS]}),
    (Tie("a", "b"), {"a": [0.5 + s for s in SEEDS], "b": [0.5 + s + (-1) ** i * 0.01 for i, s in enumerate(SEEDS)]}),
    (Close("a", 2.0, 0.01), {"a": 2.005}),
    (Close("a", "r", 0.01, rel=True), {"a": [1.0, 1.001], "r": 1.0}),
    (Equal("a", 60965224), {"a": 60965224}),
    (Equal("a", "b"), {"a": "x", "b": "x"}),
    (AtLeast("a", 0.99), {"a": [0.995, 1.0, 0.999]}),
    (AtMost("a", "b"), {"a": [0.1, 0.2], "b": 0.3}),
    (Between("a", 10, 100), {"a": 22.0}),
    (Monotone(("a", "b", "c"), increasing=False),
     {"a": [3 + s for s in SEEDS], "b": [2 + s for s in SEEDS], "c": [1 + s for s in SEEDS]}),
]


@pytest.mark.parametrize("check, values", CASES, ids=[type(c).__name__ for c, _ in CASES])
def test_each_predicate_holds_on_a_true_case_and_fails_on_its_mutants(check, values):
    assert check.check(values).ok, check.check(values).summary
    mutants = check.mutants(values)
    assert mutants
    for what, m in mutants:
        assert not check.check(m).ok, f"{check.describe()} survives '{what}'"


def test_a_check_that_ignores_its_values_is_caught():
    class Blind(Greater):
        def check(self, v):
            return super().check({**v, "a": [2.0] * 10})

    c = Blind("a", "b")
    v = {"a": [1 + s for s in SEEDS], "b": SEEDS}
    assert any(c.check(m).ok for _, m in c.mutants(v))  # the harness would report it


@pytest.mark.parametrize("kwargs, word", [
    (dict(id="8.x"), "id"),
    (dict(check="a > b"), "check"),
    (dict(budget="400 iterations"), "budget"),
    (dict(seeds=3), "seeds"),
    (dict(doubled="ch08.y"), "budget"),
])
def test_a_malformed_claim_raises(kwargs, word):
    base = dict(id="ch08.x", text="t", check=Greater("a", "b"), seeds=10)
    with pytest.raises((ValueError, TypeError), match=word):
        Claim(**(base | kwargs))


def test_costly_claims_may_rest_on_five_seeds_and_no_fewer():
    Claim(id="ch14.x", text="t", check=Greater("a", "b"), seeds=5, costly=True)
    with pytest.raises(ValueError, match="seeds"):
        Claim(id="ch14.x", text="t", check=Greater("a", "b"), seeds=4, costly=True)


CITED = cited()


@pytest.mark.parametrize("stem, fig", CITED, ids=[f"{s}:{c.name}" for s, c in CITED])
def test_each_cited_figure_equals_its_source(stem, fig):
    """One table of the figures the book quotes, each pinned to the value printed in its source."""
    import importlib

    bib = (REPO / "references.bib").read_text()
    assert re.search(r"@\w+\{" + re.escape(fig.source) + ",", bib), f"{fig.source} is not in references.bib"
    if fig.where == "glue":
        got = glued(stem).get(fig.name)
    else:
        mod, attr = fig.where.rsplit(".", 1)
        got = getattr(importlib.import_module(mod), attr)
        if isinstance(got, dict):
            got = got[fig.name]
    assert got == fig.value, f"{stem}: {fig.name} is {got!r}, the source ({fig.source}, {fig.locator}) says {fig.value!r}"
