"""How generation time grows with N: `python bench/bench_generate.py [--max 1000000] [--pipeline]`.

Prints, for N = 10^3 .. max, the time of `generate(N, seed)` (history run in the kernel model, then
the snapshot), tasks per second, the time ratio to the previous size (10 for linear growth) and the
cost per task relative to the smallest size measured in the same run (1.0 = linear). With
--pipeline it also times `procforge generate --tasks 100000 -o`, `validate` and `show` as a user
runs them. Figures depend on the machine and its load (wall seconds and CPU seconds are both
shown: on a busy machine they part); the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from procforge.generate import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max", type=int, default=1_000_000, help="largest N (default 10^6)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pipeline", action="store_true", help="also time the CLI at 100k tasks")
    args = ap.parse_args()
    sizes = [n for n in (1_000, 10_000, 100_000, 1_000_000, 10_000_000) if n <= args.max]
    print(f"{'N':>10} {'steps':>10} {'seconds':>9} {'cpu s':>8} {'tasks/s':>10} {'x prev':>7} "
          f"{'per-task':>9}")
    base = prev = None
    for n in sizes:
        t0, c0 = time.perf_counter(), time.process_time()
        tree, history = generate(n, args.seed)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        per = dt / n
        base = base or per
        ratio = f"{dt / prev:7.1f}" if prev else f"{'-':>7}"
        print(f"{n:>10} {len(history):>10} {dt:9.2f} {cpu:8.2f} {n / dt:10.0f} {ratio} "
              f"{per / base:9.2f}", flush=True)
        prev = dt
        del tree, history
    if args.pipeline:
        pipeline()


def pipeline() -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "procforge")
    with tempfile.TemporaryDirectory() as d:
        t = os.path.join(d, "t.json")
        for cmd in (["generate", "--tasks", "100000", "--seed", "1", "-o", t],
                    ["validate", t], ["show", t]):
            t0 = time.perf_counter()
            subprocess.run([exe, *cmd], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            print(f"procforge {cmd[0]:<9} (100k tasks): {time.perf_counter() - t0:6.2f} s")


if __name__ == "__main__":
    main()
