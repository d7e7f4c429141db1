"""`procforge corpus` and `procforge exhaustive`: the planner's completeness checks, on demand."""

from __future__ import annotations

import sys
import time

import click

from procforge.cli import main
from procforge.errors import EXIT_FAIL


@main.command()
@click.option("--trees", default=100_000, show_default=True, help="How many random trees.")
@click.option("--min-tasks", default=2, show_default=True)
@click.option("--max-tasks", default=200, show_default=True)
@click.option("--seed", default=0, show_default=True, help="First seed; tree i uses seed+i.")
@click.option("--features", default="all", show_default=True, help="Features for generate.")
def corpus(trees: int, min_tasks: int, max_tasks: int, seed: int, features: str) -> None:
    """Plan and verify random reachable trees from `generate`; print the count.

    Tree i has min-tasks + i mod (max-tasks - min-tasks + 1) tasks. Exit 1 when any plan fails,
    listing the first failures (size and seed, to reproduce with `generate`).
    """
    from procforge import planner
    from procforge.generate import generate, parse_features

    feats = set(parse_features(features))
    span = max_tasks - min_tasks + 1
    failures: list[str] = []
    t0 = time.perf_counter()
    tasks = 0
    for i in range(trees):
        n = min_tasks + i % span
        tree, _ = generate(n, seed + i, feats)
        tasks += n
        try:
            p = planner.plan(tree)
            r = planner.verify(tree, p.steps)
            if not r.ok:
                failures.append(f"--tasks {n} --seed {seed + i}: {r.failure or r.differences[0]}")
        except planner.Unreachable as u:
            failures.append(f"--tasks {n} --seed {seed + i}: {u.reason}")
        except Exception as e:  # noqa: BLE001 - a planner crash is a failure to report, not to stop on
            failures.append(f"--tasks {n} --seed {seed + i}: crash: {type(e).__name__}: {e}")
        if (i + 1) % 10_000 == 0:
            click.echo(f"  {i + 1} trees, {len(failures)} failures, {time.perf_counter() - t0:.0f} s",
                       err=True)
    dt = time.perf_counter() - t0
    click.echo(f"{trees} trees ({tasks} tasks, {min_tasks}..{max_tasks} each, features {features}): "
               f"{trees - len(failures)} plans verified, {len(failures)} failed, {dt:.1f} s")
    for f in failures[:20]:
        click.echo(f"  FAIL {f}")
    if failures:
        sys.exit(EXIT_FAIL)


@main.command()
@click.option("--pids", "tree_pids", default=4, show_default=True, help="Numbers a tree may use (1..N).")
@click.option("--tasks", "max_tasks", default=4, show_default=True, help="Tasks per tree, at most.")
@click.option("--extra", "extra_pids", default=1, show_default=True,
              help="Further pids helpers may hold during a history.")
def exhaustive(tree_pids: int, max_tasks: int, extra_pids: int) -> None:
    """Compare the planner with a brute-force search over every history on a small pid range.

    Every tree the search reaches must get a plan, and every valid tree it does not reach must be
    called unreachable. Prints the size of the space and the time. Exit 1 on any disagreement.
    """
    from procforge import planner
    from procforge.planner import exhaustive as E

    t0 = time.perf_counter()
    reach = E.reachable_shapes(tree_pids, max_tasks, extra_pids)
    t1 = time.perf_counter()
    click.echo(f"search: {len(reach)} reachable trees (up to renaming) on pids 1..{tree_pids}, "
               f"<= {max_tasks} tasks, {extra_pids} extra pid(s) for helpers, {t1 - t0:.1f} s")
    bad: list[str] = []
    for shape in reach:
        if not planner.check(E.to_tree(shape)).reachable:
            bad.append(f"reachable but called unreachable: {shape}")
    cands = unreachable = 0
    for shape in E.candidate_shapes(tree_pids, max_tasks):
        cands += 1
        if shape in reach:
            continue
        unreachable += 1
        if planner.check(E.to_tree(shape)).reachable:
            bad.append(f"unreachable but planned: {shape}")
    t2 = time.perf_counter()
    click.echo(f"planner: {cands} valid trees, {cands - unreachable} reachable, {unreachable} "
               f"unreachable; {len(bad)} disagreements; {t2 - t1:.1f} s")
    for b in bad[:20]:
        click.echo(f"  {b}")
    if bad:
        sys.exit(EXIT_FAIL)
