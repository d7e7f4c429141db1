"""Build hook: compile the engine (procforge/engine/engine.c) with the system C compiler.

The project is described in pyproject.toml; this file only adds the compiled engine, a small
static program installed as procforge/engine/bin/pf-engine (in the source tree for editable
installs, in the wheel otherwise). Nothing is downloaded: gcc (or $CC) must be on the machine.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SOURCE = Path("procforge/engine/engine.c")
TARGET = Path("procforge/engine/bin/pf-engine")
CFLAGS = ["-O2", "-Wall", "-fno-stack-protector", "-fno-strict-aliasing", "-U_FORTIFY_SOURCE"]


def compile_engine(out: Path) -> None:
    """Compile statically when the C library allows (a tiny image, no loader), else dynamically."""
    cc = shlex.split(os.environ.get("CC", "gcc"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    for extra in (["-static"], []):
        cmd = [*cc, *CFLAGS, *extra, "-o", str(tmp), str(SOURCE)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode == 0:
            os.chmod(tmp, 0o755)
            os.replace(tmp, out)
            return
        last = r.stderr
    sys.stderr.write(last)
    raise SystemExit(f"cannot compile the procforge engine: {' '.join(cmd)} failed")


class BuildWithEngine(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            compile_engine(TARGET)
        else:
            compile_engine(Path(self.build_lib) / TARGET)

    def get_source_files(self) -> list[str]:
        return [*super().get_source_files(), str(SOURCE)]


setup(cmdclass={"build_py": BuildWithEngine})
