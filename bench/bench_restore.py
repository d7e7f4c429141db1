"""Restore speed on the real kernel: `python bench/bench_restore.py [--flat N] [--chain N]`.

Restores three shapes into fresh pid namespaces (a flat tree of 10,000 tasks under one init, a
chain 2,000 deep, and a generated tree with every feature) and prints, per shape, the seconds of
each phase (plan, execute, read back from /proc, compare), tasks per second end to end (plan to
verified tree) and for the restore alone (execute + read + compare: the executor's job), beside a
raw C clone3 loop measured in the same run: a tiny program creating N persistent children with
set_tid, and the same with CLONE_VM (the engine's own way of cloning, its upper bound). Needs root
or unprivileged user namespaces, and gcc. Figures depend on the machine and its load: compare the
ratios to the raw loop, not the seconds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time

from procforge import steps as S
from procforge.engine.restore import restore
from procforge.generate import generate
from procforge.kernel import simulate
from procforge.tree import Tree

RAW = r"""
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/sched.h>
static int idle(void) { for (;;) pause(); }
static long clone3_vm(struct clone_args *ca) {
    long ret;
    __asm__ volatile("syscall\n\ttest %%rax,%%rax\n\tjnz 1f\n\tcall *%2\n\thlt\n1:\n"
                     : "=a"(ret) : "a"(435L), "r"(idle), "D"(ca), "S"(sizeof *ca)
                     : "rcx", "r11", "memory");
    return ret;
}
int main(int argc, char **argv) {
    int n = atoi(argv[1]), vm = atoi(argv[2]);
    char *stacks = mmap(0, (size_t)n * 16384, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) {
        pid_t tid = i + 2;
        struct clone_args ca;
        memset(&ca, 0, sizeof ca);
        ca.exit_signal = SIGCHLD;
        ca.set_tid = (uint64_t)(uintptr_t)&tid;
        ca.set_tid_size = 1;
        long r;
        if (vm) {
            ca.flags = CLONE_VM;
            ca.stack = (uint64_t)(uintptr_t)(stacks + (size_t)i * 16384);
            ca.stack_size = 16384;
            r = clone3_vm(&ca);
        } else {
            r = syscall(435, &ca, sizeof ca);
            if (r == 0) idle();
        }
        if (r < 0) { perror("clone3"); return 1; }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.0f\n", n / ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9));
    return 0;  /* pid 1 of its namespace: its exit takes every child with it */
}
"""


def raw_loop(n: int, vm: bool, exe: str) -> float:
    """Tasks per second of the raw loop, run as init of a fresh pid namespace."""
    cmd = ["unshare", "--pid", "--fork", "--kill-child"]
    if os.geteuid() != 0:
        cmd[1:1] = ["--user", "--map-root-user"]
    out = subprocess.run([*cmd, exe, str(n), str(int(vm))], capture_output=True, text=True,
                         check=True, timeout=300)
    return float(out.stdout.split()[-1])


def flat(n: int) -> Tree:
    return simulate([S.Fork(1, (i,)) for i in range(2, n + 1)]).kernel.snapshot(source="flat")


def chain(n: int) -> Tree:
    return simulate([S.Fork(i, (i + 1,)) for i in range(1, n)]).kernel.snapshot(source="chain")


def measure(name: str, tree: Tree, raw: float) -> None:
    from procforge.planner import plan

    t0 = time.perf_counter()
    steps = plan(tree).steps
    t_plan = time.perf_counter() - t0
    r = restore(tree, steps)
    tm = r.timings
    t1 = time.perf_counter()
    r.execution.kill()
    t_kill = time.perf_counter() - t1
    own = tm["execute"] + tm["read"] + tm["compare"]
    e2e = t_plan + own
    n = len(tree)
    print(f"{name:>6} {n:>6} {len(steps):>6} {t_plan:6.2f} {tm['execute']:6.2f} {tm['read']:6.2f} "
          f"{tm['compare']:6.2f} {t_kill:6.2f} {n / e2e:8.0f} {n / own:8.0f} {n / own / raw:6.2f}",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flat", type=int, default=10_000, help="tasks of the flat tree")
    ap.add_argument("--chain", type=int, default=2_000, help="depth of the chain")
    ap.add_argument("--mixed", type=int, default=5_000, help="tasks of the generated tree")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        src, exe = os.path.join(d, "raw.c"), os.path.join(d, "raw")
        with open(src, "w") as f:
            f.write(RAW)
        subprocess.run(["gcc", "-O2", "-o", exe, src], check=True)
        raw = raw_loop(args.flat, False, exe)
        raw_vm = raw_loop(args.flat, True, exe)
    print(f"raw clone3 loop, {args.flat} persistent children: {raw:.0f} tasks/s "
          f"(with CLONE_VM: {raw_vm:.0f} tasks/s)")
    print(f"{'shape':>6} {'tasks':>6} {'steps':>6} {'plan':>6} {'exec':>6} {'read':>6} "
          f"{'cmp':>6} {'kill':>6} {'e2e/s':>8} {'rest/s':>8} {'x raw':>6}")
    mixed, _ = generate(args.mixed, args.seed)
    for name, tree in (("flat", flat(args.flat)), ("chain", chain(args.chain)),
                       ("mixed", mixed)):
        measure(name, tree, raw)
    print("seconds per phase; e2e/s = tasks / (plan + exec + read + cmp); rest/s = tasks / (exec + "
          "read + cmp); x raw = rest/s over the raw loop without CLONE_VM")


if __name__ == "__main__":
    main()
