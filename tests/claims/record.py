"""Glued values of executed notebooks: from the built book or straight from an executed notebook."""

from __future__ import annotations

import ast


def glued_values(nb: dict) -> dict:
    """{name: value} of every glue record (MyST-NB's scrapbook metadata) in an executed notebook."""
    values = {}
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            plain = [k for k in out.get("data", {}) if k.endswith("text/plain")]
            if name is not None and plain:
                text = out["data"][plain[0]]
                text = "".join(text) if isinstance(text, list) else text
                try:
                    values[name] = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    values[name] = text
    return values
