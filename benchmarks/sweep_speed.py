"""Time one seed sweep of the chapter 12 models both ways (vmap over stacked models vs a plain loop) in one process.

Usage: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sweep_speed.py [--models 12] [--steps 200] [--repeats 3]
Prints seconds per sweep (best of the repeats, after a warm-up) and the speedup; also checks both give the same weights.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from dlbook.edge_models import make_cnn, make_mlp
from dlbook.edges import edge_images
from dlbook.runtime import pick_device, torch_generator
from dlbook.sweep import SweepConfig, train_looped, train_vectorized


def sweep_data(n_models: int, n_per_class: int):
    parts = [edge_images(n_per_class, generator=torch_generator(10_000 + s)) for s in range(n_models)]
    return torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts])


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--n-per-class", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = pick_device()
    seeds = list(range(args.models))
    x, y = sweep_data(args.models, args.n_per_class)
    print(f"device {device}, torch threads {torch.get_num_threads()}, {args.models} models, "
          f"{args.steps} steps, {3 * args.n_per_class} training images each")
    kinds = {
        "cnn": (lambda s: make_cnn(seed=s), SweepConfig(steps=args.steps, batch_size=16, lr=0.01)),
        "mlp": (lambda s: make_mlp(seed=s), SweepConfig(steps=args.steps, batch_size=32, lr=0.001)),
    }
    for name, (make, cfg) in kinds.items():
        models = [make(s) for s in seeds]

        def run(train, out=None):
            ms = copy.deepcopy(models)
            train(ms, x, y, cfg=cfg, seeds=seeds, device=device)
            if out is not None:
                out.extend(ms)

        # warm-up: first calls pay for kernel selection and vmap's batching rules
        warm = SweepConfig(steps=5, batch_size=cfg.batch_size, lr=cfg.lr)
        for train in (train_vectorized, train_looped):
            train(copy.deepcopy(models), x, y, cfg=warm, seeds=seeds, device=device)
        t_vec = best_time(lambda: run(train_vectorized), args.repeats)
        t_loop = best_time(lambda: run(train_looped), args.repeats)
        a, b = [], []
        run(train_vectorized, a)
        run(train_looped, b)
        diff = max((p - q).abs().max().item() for ma, mb in zip(a, b) for p, q in zip(ma.parameters(), mb.parameters()))
        print(f"{name}: vectorized {t_vec:.2f} s, plain loop {t_loop:.2f} s, speedup {t_loop / t_vec:.2f}x "
              f"(max weight difference {diff:.1e})")


if __name__ == "__main__":
    main()
