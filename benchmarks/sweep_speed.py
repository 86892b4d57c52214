"""Time one seed sweep of the chapter 12 models both ways in one process, at the current thread count.

The workloads are chapter 12's own calls of `edges.run_lab`: ten seeds, each model on its own
20 training images per class with a validation split of 100 per class, evaluated on both as
the chapter does (the CNN: batches of 16, Adam, lr 0.01, 200 steps, every 25; the MLP: batches
of 32, Adam, lr 1e-3, 600 steps, every 50).

The reference is `train.fit` model by model; the sweep is `sweep.fit_stacked` on all models at
once (same TrainConfig, same minibatch orders). After a warm-up, the two are timed in turns
(stacked, loop, stacked, loop, ...) so that a busy machine slows both alike; prints the median
wall-clock and CPU seconds per sweep, the median of the per-round speedups, and the largest
weight difference between the two.

Usage: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sweep_speed.py [--models 10] [--steps 200]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from dlbook.edge_models import make_cnn, make_mlp
from dlbook.edges import edge_split
from dlbook.runtime import pick_device
from dlbook.sweep import fit_stacked
from dlbook.train import TrainConfig, fit


def sweep_data(n_models: int, n_per_class: int, n_val_per_class: int = 100):
    """(x, y, x_val, y_val), each stacked over models: model k's split is edge_split(seed=k), as run_lab draws it."""
    parts = [edge_split(n_per_class, seed=s, n_val_per_class=n_val_per_class) for s in range(n_models)]
    return tuple(torch.stack(t) for t in zip(*parts))


def interleaved_times(fns, rounds: int) -> list[tuple[list[float], list[float]]]:
    """Wall-clock and CPU seconds of each fn in `fns`, called in turns for `rounds` rounds."""
    out = [([], []) for _ in fns]
    for _ in range(rounds):
        for fn, (wall, cpu) in zip(fns, out):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return out


def looped(models, data, *, cfg, seeds, device):
    for m, (xk, yk, xv, yv), s in zip(models, zip(*data), seeds):
        fit(m, xk, yk, cfg=cfg, seed=s, device=device, x_val=xv, y_val=yv)


def stacked(models, data, *, cfg, seeds, device):
    x, y, x_val, y_val = data
    fit_stacked(models, x, y, cfg=cfg, seeds=seeds, device=device, x_val=x_val, y_val=y_val)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--steps", type=int, default=0, help="override both workloads' steps")
    parser.add_argument("--n-per-class", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kinds", default="cnn,mlp", help="comma-separated: cnn, mlp")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device()
    seeds = list(range(args.models))
    data = sweep_data(args.models, args.n_per_class)
    print(f"device {device}, torch threads {torch.get_num_threads()}, {args.models} models, "
          f"{3 * args.n_per_class} training and 300 validation images each")
    kinds = {
        "cnn": (make_cnn, TrainConfig(steps=args.steps or 200, batch_size=16, optimizer="adam", lr=0.01,
                                      eval_every=25)),
        "mlp": (make_mlp, TrainConfig(steps=args.steps or 600, batch_size=32, optimizer="adam", lr=1e-3,
                                      eval_every=50)),
    }
    speedups = {}
    for name in args.kinds.split(","):
        make, cfg = kinds[name]
        models = [make(seed=s) for s in seeds]

        def run(train, out=None):
            ms = copy.deepcopy(models)
            train(ms, data, cfg=cfg, seeds=seeds, device=device)
            if out is not None:
                out.extend(ms)

        # warm-up: the first calls pay for kernel selection and allocations
        warm = TrainConfig(steps=5, batch_size=cfg.batch_size, optimizer="adam", lr=cfg.lr)
        for train in (stacked, looped):
            train(copy.deepcopy(models), data, cfg=warm, seeds=seeds, device=device)
        (w_st, c_st), (w_lp, c_lp) = interleaved_times([lambda: run(stacked), lambda: run(looped)],
                                                       args.repeats)
        med = statistics.median
        ratios = (med(a / b for a, b in zip(w_lp, w_st)), med(a / b for a, b in zip(c_lp, c_st)))
        a, b = [], []
        run(stacked, a)
        run(looped, b)
        diff = max((p - q).abs().max().item() for ma, mb in zip(a, b)
                   for p, q in zip(ma.parameters(), mb.parameters()))
        speedups[name] = ratios
        print(f"{name} ({cfg.steps} steps): fit_stacked {med(w_st):.2f} s (CPU {med(c_st):.2f} s), fit model by model "
              f"{med(w_lp):.2f} s (CPU {med(c_lp):.2f} s), medians of {args.repeats} rounds; "
              f"max weight difference {diff:.1e}")
    print(f"speedups at {torch.get_num_threads()} thread(s), median over rounds, wall clock (CPU time): "
          + ", ".join(f"{k.upper()} {w:.2f}x ({c:.2f}x)" for k, (w, c) in speedups.items()))

if __name__ == "__main__":
    main()
