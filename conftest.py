"""Make nbval execute cells exactly as Jupyter and the book build do.

nbval sends each cell with store_history=False. IPython decides whether a trailing `;` hides a
cell's result by looking at the last line in its history, so without history a cell ending in
`f();` shows `f()`'s value under nbval but not on the page, and strict nbval reports an output
the published notebook does not have. Executing with history restores the reader's semantics.
"""

try:
    from nbval.kernel import RunningKernel
    from nbval.plugin import IPyNbFile
except ImportError:  # nbval not installed: nothing to patch
    RunningKernel = IPyNbFile = None

# Figures are not compared (nbval skips image/png): glued figures carry the same PNG under
# MyST-NB's glue mime prefix, so skip those too. Numbers and text are still compared.
GLUED_IMAGES = tuple(f"application/papermill.record/{kind}" for kind in ("image/png", "image/jpeg", "image/svg+xml"))


def _execute_cell_input(self, cell_input, allow_stdin=None):
    return self.kc.execute(cell_input, store_history=True, allow_stdin=allow_stdin, stop_on_error=False)


if RunningKernel is not None:
    RunningKernel.execute_cell_input = _execute_cell_input

    _init = IPyNbFile.__init__

    def _init_skipping_glued_images(self, *args, **kwargs):
        _init(self, *args, **kwargs)
        self.skip_compare = self.skip_compare + GLUED_IMAGES

    IPyNbFile.__init__ = _init_skipping_glued_images
