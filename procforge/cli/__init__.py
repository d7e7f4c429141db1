"""The `procforge` command: one click group; each command lives in its own module below.

Errors: every ProcforgeError becomes one line on stderr and its exit code (docs/cli.md); click's
own usage errors exit 2 as well. No traceback reaches the user.
"""

from __future__ import annotations

import sys

import click

from procforge.errors import ProcforgeError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):  # noqa: ANN201 - click's signature
        try:
            return super().invoke(ctx)
        except ProcforgeError as e:
            click.echo(f"procforge: {e}", err=True)
            sys.exit(e.exit_code)
        except BrokenPipeError:
            sys.exit(0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="procforge")
def main() -> None:
    """Recreate Linux process trees exactly: plan, prove on a kernel model, restore for real.

    Exit codes: 0 success; 1 the answer is no (a step failed, unreachable, differences);
    2 invalid input; 3 the machine cannot do it (privilege, pids taken).
    """


# Each command module registers itself on `main` when imported.
from procforge.cli import (  # noqa: E402,F401
    cmd_capture,
    cmd_demo,
    cmd_diff,
    cmd_execute,
    cmd_fuzz,
    cmd_generate,
    cmd_import_criu,
    cmd_plan,
    cmd_prove,
    cmd_restore,
    cmd_show,
    cmd_simulate,
    cmd_validate,
)
