"""Each chapter's .md is paired with a committed .ipynb (what Colab/Binder open): in sync, stable ids, no outputs."""

from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9]*.md"))


def test_there_are_chapters():
    assert CHAPTERS, "no chapters found"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_pair_in_sync(md):
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `make sync`"
    a, b = jupytext.read(md), jupytext.read(ipynb)
    cells_a = [(c.cell_type, c.source) for c in a.cells]
    cells_b = [(c.cell_type, c.source) for c in b.cells]
    assert cells_a == cells_b, f"{md.name} and {ipynb.name} differ: run `make sync`"
    assert a.metadata["kernelspec"]["name"] == b.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_ipynb_has_stable_ids_and_no_outputs(md):
    import json

    nb = json.loads(md.with_suffix(".ipynb").read_text())
    ids = [c.get("id") for c in nb["cells"]]
    assert all(ids) and len(set(ids)) == len(ids), "cell ids must exist and be unique"
    outputs = [c for c in nb["cells"] if c["cell_type"] == "code" and c.get("outputs")]
    assert not outputs, "commit notebooks without outputs (the site shows the executed ones)"
    assert "formats" in nb["metadata"].get("jupytext", {}), "notebook must be jupytext-paired"


def test_the_bibliography_parses_and_holds_every_cited_key():
    """A broken references.bib fails the whole book build; catch it (and unknown keys) in seconds."""
    import re

    from pybtex.database import parse_file

    root = Path(__file__).resolve().parents[1]
    text = (root / "references.bib").read_text()
    entries = parse_file(str(root / "references.bib")).entries
    assert len(entries) == len(re.findall(r"^@\w+\{", text, re.M)), "an entry swallowed another"
    cited = set()
    for md in (root / "chapters").glob("*.md"):
        for keys in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", md.read_text()):
            cited |= {k.strip() for k in keys.split(",")}
    assert cited and not cited - set(entries), sorted(cited - set(entries))
