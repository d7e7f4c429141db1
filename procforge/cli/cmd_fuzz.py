"""`procforge fuzz --kernel --seconds N [--seed S] [--tasks N] [--features LIST] [--save DIR]`."""

from __future__ import annotations

import sys

import click

from procforge.cli import main
from procforge.errors import EXIT_FAIL, EnvironmentProblem, InvalidInput


@main.command("fuzz")
@click.option("--kernel", is_flag=True, help="Judge the model by the real kernel (required).")
@click.option("--seconds", type=float, default=60.0, show_default=True,
              help="Run histories for this long.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="First history's seed (history i uses seed + i).")
@click.option("--tasks", type=int, default=30, show_default=True,
              help="Each history builds 2..TASKS tasks.")
@click.option("--features", default="all", show_default=True,
              help="Generator features: all, none, a comma list, -name to remove one.")
@click.option("--cuts", type=int, default=1, show_default=True,
              help="Random prefixes per history whose trees are compared too.")
@click.option("--save", metavar="DIR", help="Write each disagreement's history here.")
def fuzz_cmd(kernel: bool, seconds: float, seed: int, tasks: int, features: str, cuts: int,
             save: str | None) -> None:
    """Differential test of the kernel model: random histories (half of them with wrong steps
    inserted on purpose) run on the real kernel in private pid namespaces and in the model; every
    step's result and the trees are compared. Exit 1 when they disagree anywhere."""
    import os

    from procforge import fuzz
    from procforge.generate import parse_features

    if not kernel:
        raise InvalidInput("fuzz needs --kernel (the kernel is the judge; there is no other mode)")
    if not 2 <= tasks <= 10_000:
        raise InvalidInput(f"--tasks must be between 2 and 10000, not {tasks}")
    if os.geteuid() != 0:
        raise EnvironmentProblem("fuzz --kernel reads zombies' exit codes in /proc: run as root")
    feats = parse_features(features)
    saved = 0

    def report(d: fuzz.Disagreement) -> None:
        nonlocal saved
        what = "timing" if d.late_thread else "DISAGREEMENT"
        click.echo(f"{what}: {d.origin}: step {d.index + 1} "
                   f"({fuzz.S.format_step(d.steps[d.index])}): kernel {d.kernel}; model {d.model}")
        if save:
            saved += 1
            click.echo(f"  saved {fuzz.save(d, save, saved)}")

    st = fuzz.campaign(seconds=seconds, seed=seed, max_tasks=tasks, features=feats, cuts=cuts,
                       report=report)
    click.echo(f"{st.histories} histories ({st.mutated} mutated), {st.steps} steps "
               f"({st.failing_steps} refused by the kernel), {st.prefix_runs} prefix runs, "
               f"{st.seconds:.0f} s: {len(st.disagreements)} disagreement(s), "
               f"{len(st.timing)} timing artefact(s) of the executor")
    for n, (origin, err, steps) in enumerate(st.engine_errors, 1):
        click.echo(f"ENGINE ERROR: {origin}: {err}")
        if save:
            import pathlib

            out = pathlib.Path(save) / f"engine-error-{n:04d}.steps"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(f"# {origin}: {err}\n"
                           + "".join(fuzz.S.format_step(s) + "\n" for s in steps))
    if st.engine_errors:
        click.echo(f"{len(st.engine_errors)} engine error(s)")
    if st.disagreements or st.engine_errors:
        sys.exit(EXIT_FAIL)
