"""Show the library's own source on a page, so text and code cannot drift apart.

Used by chapters: 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15.
"""

from __future__ import annotations

import inspect


def source(*objs):
    """Markdown of the source of functions/classes `objs` as one highlighted Python block."""
    from IPython.display import Markdown

    if not objs:
        raise ValueError("source() needs at least one function or class")
    for o in objs:
        if not (inspect.isfunction(o) or inspect.isclass(o) or inspect.ismethod(o)):
            raise TypeError(f"source() takes functions or classes, got {type(o).__name__}")
    code = "\n\n".join(inspect.getsource(o).rstrip() for o in objs)
    return Markdown(f"```python\n{code}\n```")
