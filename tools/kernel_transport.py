"""Chapter kernels talk to the build over encrypted sockets (CurveZMQ), so ipykernel does not warn.

ipykernel >= 7 logs "Kernel is running over TCP without encryption ..." once per kernel when the
kernel manager does not provision CurveZMQ keys; jupyter_client >= 8.10 provisions them only when
asked (`transport_encryption="auto"`), and nbclient (used by jupyter-cache and MyST-NB) cannot be
told to ask. `encrypt_kernel_transport()` makes "auto" the default for kernels whose kernelspec
declares Curve support, when libzmq has it: the warning's cause goes away instead of the warning
being hidden. Called by tools/build_book.py and by the Sphinx extension tools/dlbook_sphinx.py.
"""

from __future__ import annotations


def encrypt_kernel_transport() -> bool:
    """Default kernel managers to transport_encryption="auto"; True if in effect (idempotent)."""
    try:
        import zmq
        from jupyter_client.manager import KernelManager
    except ImportError:
        return False
    pre_start = KernelManager._async_pre_start_kernel
    if getattr(pre_start, "_dlbook", False):
        return True
    if not (zmq.has("curve") and hasattr(KernelManager, "_kernel_supports_curve_encryption")):
        return False  # an older jupyter_client (whose kernels do not warn) or libzmq without Curve

    async def _async_pre_start_kernel(self, *, transport_encryption=None, **kw):
        if (transport_encryption is None and self.transport_encryption == "disabled"
                and self.transport == "tcp" and self._kernel_supports_curve_encryption()):
            transport_encryption = "auto"
        return await pre_start(self, transport_encryption=transport_encryption, **kw)

    _async_pre_start_kernel._dlbook = True
    KernelManager._async_pre_start_kernel = _async_pre_start_kernel
    return True
