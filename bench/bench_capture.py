"""Capture speed against ps: `python bench/bench_capture.py [--tasks 10000] [--rounds 7]` (root).

Builds a tree of N tasks in a private pid namespace with a small C helper (fan-out 10, with
sessions, groups, zombies, stopped tasks, threads and subreapers), then, round after round and
interleaved so that both see the same machine load, times `ps -e -o pid,ppid,pgid,sid,stat` and
read_tree (probe off) through the host's /proc and through the namespace's own /proc, and once
read_tree with the subreaper probe. Prints each figure's best and median wall time and its ratio
to ps's in the same run. The target: <= 0.5 s for 10,000 tasks with the probe off. The namespace
is SIGKILLed at the end: nothing is left behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procforge.capture import read_tree

HELPER = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>
static long N, FAN = 10;
static void *idle(void *a) { (void)a; for (;;) pause(); }
static void node(long i) {
  for (long c = FAN * i + 1; c <= FAN * i + FAN && c < N; c++) {
    pid_t p = fork();
    if (p < 0) _exit(1);
    if (p == 0) node(c);
  }
  if (i % 7 == 3) setsid(); else if (i % 5 == 2) setpgid(0, 0);
  if (i % 50 == 9) { pthread_t t; pthread_create(&t, 0, idle, 0); pthread_create(&t, 0, idle, 0); }
  if (i % 97 == 11) prctl(PR_SET_CHILD_SUBREAPER, 1);
  int leaf = i && FAN * i + 1 >= N;
  if (write(1, "x", 1) != 1) _exit(1);
  if (leaf && i % 13 == 5) _exit(i % 256);
  if (leaf && i % 31 == 6) raise(SIGSTOP);
  for (;;) pause();
}
int main(int argc, char **argv) { N = atol(argv[1]); node(0); return 0; }
"""


def build(tasks: int, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    src, exe = workdir / "mk.c", workdir / "mk"
    src.write_text(HELPER)
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src), "-lpthread"], check=True)
    p = subprocess.Popen(["unshare", "--fork", "--pid", "--mount-proc", "--kill-child",
                          str(exe), str(tasks)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert p.stdout is not None
    got = 0
    while got < tasks:
        b = p.stdout.read(tasks - got)
        if not b:
            raise RuntimeError("the helper died while building")
        got += len(b)
    with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
        init = int(f.read().split()[0])
    time.sleep(0.5)  # the last zombies and stops settle
    return p, init


def timed(fn) -> float:  # noqa: ANN001 - any callable
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (pid namespaces)")
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        p, init = build(args.tasks, Path(d))
        print(f"built {args.tasks} tasks in {time.perf_counter() - t0:.1f} s (init {init})")
        try:
            tree = read_tree(init)
            print(f"tree: {len(tree)} tasks, {sum(len(t.threads) for t in tree)} threads, "
                  f"{sum(t.state == 'zombie' for t in tree)} zombies, "
                  f"{sum(t.state == 'stopped' for t in tree)} stopped")
            ns_proc = f"/proc/{init}/root/proc"
            ps = ["ps", "-e", "-o", "pid,ppid,pgid,sid,stat"]
            runs: dict[str, list[float]] = {"ps": [], "read_tree host /proc": [],
                                            "read_tree ns /proc": []}
            for _ in range(args.rounds):
                runs["ps"].append(timed(lambda: subprocess.run(ps, stdout=subprocess.DEVNULL,
                                                               check=True)))
                runs["read_tree host /proc"].append(timed(lambda: read_tree(init)))
                runs["read_tree ns /proc"].append(timed(lambda: read_tree(1, proc=ns_proc)))
            runs["read_tree + probe"] = [timed(lambda: read_tree(init, probe_subreaper=True))]
            base = min(runs["ps"])
            print(f"{'':24} {'best s':>8} {'median s':>9} {'best/ps':>8}")
            for name, xs in runs.items():
                print(f"{name:24} {min(xs):8.3f} {statistics.median(xs):9.3f} "
                      f"{min(xs) / base:8.2f}")
            best = min(runs["read_tree host /proc"])
            per = best * 10_000 / len(tree)
            print(f"target 0.5 s for 10,000 tasks: {'met' if per <= 0.5 else 'missed'}"
                  f" ({per:.3f} s per 10,000)")
        finally:
            os.kill(init, signal.SIGKILL)
            p.wait()


if __name__ == "__main__":
    main()
