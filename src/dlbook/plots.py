"""One plotting style for every figure, one colour per compared method, and mean ± band helpers.

Core module; every chapter with a figure uses it.

Used by chapters: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15.
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np

# Okabe-Ito: distinguishable with colour-blindness and on both light and dark pages.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

# One colour per method across the book: a method keeps its colour on every page.
METHOD_COLORS = {
    "sgd": PALETTE[0], "momentum": PALETTE[1], "nesterov": PALETTE[2], "adam": PALETTE[3],
    "adamw": PALETTE[4], "no dropout": PALETTE[7], "dropout": PALETTE[0],
    "input dropout": PALETTE[5], "hidden dropout": PALETTE[1], "batch norm": PALETTE[2],
    "cnn": PALETTE[0], "mlp": PALETTE[1], "max": PALETTE[0], "avg": PALETTE[1], "min": PALETTE[2],
    "train": PALETTE[0], "validation": PALETTE[1], "test": PALETTE[2],
    "l2": PALETTE[3], "decoupled": PALETTE[4], "no decay": PALETTE[7], "weight decay": PALETTE[3],
    "plain": PALETTE[7], "residual": PALETTE[0],
    "constant lr": PALETTE[7], "step decay": PALETTE[5], "plateau": PALETTE[1],
    "relu": PALETTE[0], "sigmoid": PALETTE[1], "ordered": PALETTE[3], "shuffled": PALETTE[2],
    "full batch": PALETTE[7], "minibatch": PALETTE[0], "large minibatch": PALETTE[5],
    "constant": PALETTE[7], "1/t": PALETTE[2], "1/t^2": PALETTE[3],
    "linear scaling": PALETTE[2], "fixed lr": PALETTE[7],
}

# The site's figure column is 676 px wide at a 1280-px window, and a PNG wider than that is shrunk
# to fit: a figure at most MAX_WIDTH inches wide (100 dpi on screen) is shown at its own size, so
# its smallest text (10 pt = 13.9 px) is at least the page's small print (13 px, `font-size: small`).
MAX_WIDTH = 6.8
MIN_FONT_PT = 10

RC = {
    "figure.figsize": (6.4, 3.8),
    # every pyplot figure is made to fit the column (`fit_column`)
    "figure.hooks": ["dlbook.plots:fit_column"],
    "figure.dpi": 100,
    "savefig.dpi": 150,
    # an opaque white background keeps axes legible in the theme's dark mode
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11.5,
    "axes.labelsize": 10.5,
    "legend.fontsize": MIN_FONT_PT,
    "legend.frameon": False,
    "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT,
    "font.size": MIN_FONT_PT,
    "lines.linewidth": 1.8,
    "image.cmap": "viridis",
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "svg.hashsalt": "dlbook",  # deterministic SVG ids
}


def use_style() -> None:
    """Apply the book's matplotlib style (idempotent); in IPython, figures display as `png`."""
    mpl.rcParams.update(RC)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    _register_png(get_ipython())


def _register_png(shell) -> None:
    """Make IPython draw figures with `png` (the inline backend registers its own formatter
    when pyplot first loads it, hence also called for every new figure by `fit_column`)."""
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    from matplotlib.figure import Figure

    formatter = shell.display_formatter.formatters["image/png"]
    if formatter.type_printers.get(Figure) is not png:
        formatter.for_type(Figure, png)


def fit_column(fig) -> None:
    """Shrink a new figure wider than MAX_WIDTH inches to that width, aspect kept (a pyplot hook).

    The page would shrink its image instead, and its text with it: a 12-inch figure's 10-pt
    labels would show 7 px tall. Set here, before anything is drawn, so that the layout is made
    for the final size.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        pass
    else:
        _register_png(get_ipython())
    width, height = fig.get_size_inches()
    if width > MAX_WIDTH:
        fig.set_size_inches(MAX_WIDTH, height * MAX_WIDTH / width)


def min_font_px(fig) -> float:
    """The height in pixels, at the figure's dpi, of its smallest visible text."""
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes, default=MIN_FONT_PT) * fig.dpi / 72


def fit_tight_box(fig, *, tries: int = 4) -> None:
    """Narrow `fig` until its tight box (what `png` saves: a legend placed outside the axes
    included) is at most MAX_WIDTH inches wide; the page would otherwise shrink it, text too.
    Text that is itself wider than the column (a long title) does not narrow with the figure:
    the figure is then left as it was (tests/test_site.py reports its small text)."""
    pad = mpl.rcParams["savefig.pad_inches"]  # bbox_inches="tight" adds it on both sides
    size = fig.get_size_inches().copy()
    last = step = None
    for _ in range(tries):
        fig.draw_without_rendering()  # tick labels and the layout exist only once drawn
        excess = fig.get_tightbbox().width + 2 * pad - MAX_WIDTH
        if excess <= 0.01:
            return
        if last is not None and last - excess < 0.5 * step:
            break  # narrowing the figure hardly narrows its box
        last, step = excess, excess + 0.02
        if fig.get_size_inches()[0] - step < 1.0:
            break
        fig.set_size_inches(fig.get_size_inches()[0] - step, size[1])
    fig.set_size_inches(size)
    fig.draw_without_rendering()


def png(fig) -> bytes:
    """The figure as IPython's inline backend draws it (tight box, the figure's dpi), with its
    smallest text size in the PNG's metadata (`dlbook:min-font-px`, read by tests/test_site.py)."""
    from io import BytesIO

    if not fig.axes and not fig.texts:
        return None  # an empty figure shows nothing, as in IPython
    fit_tight_box(fig)
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight",
                metadata={"dlbook:min-font-px": f"{min_font_px(fig):.2f}"})
    return buf.getvalue()


def color(method: str) -> str:
    """The book-wide colour of a method (case-insensitive); KeyError names the unknown method."""
    key = method.lower()
    if key not in METHOD_COLORS:
        raise KeyError(f"no colour for method {method!r}; add it to dlbook.plots.METHOD_COLORS")
    return METHOD_COLORS[key]


def band(ax, x, ys, *, label: str | None = None, color: str | None = None, alpha: float = 0.2, **kw):
    """Plot the mean over seeds of ys (seeds, len(x)) with a ± 1 sd band; returns the line."""
    ys = np.asarray(ys, dtype=float)
    if ys.ndim != 2 or ys.shape[1] != len(x):
        raise ValueError(f"ys must be (seeds, {len(x)}), got {ys.shape}")
    mean, sd = ys.mean(0), ys.std(0, ddof=1) if len(ys) > 1 else np.zeros(ys.shape[1])
    (line,) = ax.plot(x, mean, label=label, color=color, **kw)
    ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=alpha, linewidth=0)
    return line


def errorbars(ax, x, ys, *, label: str | None = None, color: str | None = None, **kw):
    """Mean over seeds of ys (seeds, len(x)) with ± 1 sd error bars and markers; returns the container."""
    ys = np.asarray(ys, dtype=float)
    if ys.ndim != 2 or ys.shape[1] != len(x):
        raise ValueError(f"ys must be (seeds, {len(x)}), got {ys.shape}")
    sd = ys.std(0, ddof=1) if len(ys) > 1 else np.zeros(ys.shape[1])
    kw = {"marker": "o", "capsize": 3, "markersize": 4} | kw
    return ax.errorbar(x, ys.mean(0), yerr=sd, label=label, color=color, **kw)
