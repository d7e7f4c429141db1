"""Planner speed: plan generated trees of 10^4, 10^5 (and 10^6 with --max 1000000) tasks.

Prints tasks per second for building the plan (every step is run in the kernel model as it is
emitted) and for the separate verification, and the ratio of times between sizes: a ratio near 10
per decade means linear. The baseline measured in the same run is replaying the plan in the model
alone (the cost of the model itself), so the planner's own overhead shows as a ratio against it.

    python bench/bench_planner.py [--max 1000000] [--seed 1]
"""

from __future__ import annotations

import argparse
import time

from procforge import planner
from procforge.gcpause import paused
from procforge.generate import FEATURES, generate
from procforge.planner.build import build, start_state


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    sizes = [n for n in (10_000, 100_000, 1_000_000) if n <= args.max]
    prev = None
    print(f"{'tasks':>9} {'steps':>9} {'build s':>8} {'tasks/s':>9} {'replay s':>8} {'build/replay':>12} "
          f"{'verify s':>8} {'x prev':>7}")
    for n in sizes:
        tree, _ = generate(n, args.seed, set(FEATURES))
        t0 = time.perf_counter()
        with paused():  # as planner.plan does
            res = build(tree)
        t_build = time.perf_counter() - t0
        t1 = time.perf_counter()
        with paused():
            k = start_state(tree)
            assert k.run(res.steps) is None
        t_replay = time.perf_counter() - t1
        t2 = time.perf_counter()
        assert planner.verify(tree, res.steps).ok
        t_verify = time.perf_counter() - t2
        ratio = f"{t_build / prev:7.1f}" if prev else "      -"
        print(f"{n:>9} {len(res.steps):>9} {t_build:8.2f} {n / t_build:9.0f} {t_replay:8.2f} "
              f"{t_build / t_replay:12.1f} {t_verify:8.2f} {ratio}")
        prev = t_build


if __name__ == "__main__":
    main()
