"""Device choice, seeded generators, seeded model construction and a report of the environment.

Core module; every chapter uses it.

Used by chapters: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys

import numpy as np
import torch

from . import checks


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA when present (or when `prefer="cuda"`), otherwise the CPU."""
    if prefer is not None and prefer not in ("cpu", "cuda"):
        raise ValueError(f"prefer must be None, 'cpu' or 'cuda', got {prefer!r}")
    if prefer == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if prefer == "cuda":
        raise ValueError("prefer='cuda' but no CUDA device is available")
    return torch.device("cpu")


def torch_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh `torch.Generator` on `device`, seeded with `seed` (no global state touched)."""
    g = torch.Generator(device=device)
    g.manual_seed(checks.seed(seed))
    return g


def numpy_rng(seed: int) -> np.random.Generator:
    """A fresh numpy `Generator` seeded with `seed`."""
    return np.random.default_rng(checks.seed(seed))


@contextlib.contextmanager
def global_seed(seed: int, device: torch.device | str = "cpu"):
    """Seed torch's global generators (CPU, and `device` if CUDA) inside a fork: the caller's state is untouched.

    For what draws from the global generator only: nn.Dropout masks and torch's default initialisation.
    """
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(checks.seed(seed))
        yield


def seeded(build, *, seed: int):
    """build() with torch's default initialisation drawn from `seed`, on the CPU (same weights on any device)."""
    with global_seed(seed):
        return build()


def progress_enabled() -> bool:
    """Progress bars are on for readers and off in the book build (DLBOOK_PROGRESS=0)."""
    return os.environ.get("DLBOOK_PROGRESS", "1") != "0"


def progress(iterable=None, **kwargs):
    """`tqdm.auto.tqdm` that the book build silences so executed pages stay clean."""
    from tqdm.auto import tqdm

    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=not progress_enabled(), **kwargs)


def environment_report(device: torch.device | None = None) -> dict[str, str]:
    """Package versions, device and thread count, as strings for a table."""
    import matplotlib

    device = device or pick_device()
    report = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "device": str(device),
        "torch threads": str(torch.get_num_threads()),
        "CPU cores": str(os.cpu_count()),
    }
    try:
        import torchvision

        report["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover
        report["torchvision"] = "not installed"
    if device.type == "cuda":
        report["GPU"] = torch.cuda.get_device_name(device)
    report["executable"] = sys.executable
    return report
