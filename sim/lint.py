"""Lint generated Verilog with `verilator --lint-only -Wall` and the documented waivers."""

import pathlib
import subprocess

from .toolchain import use_verilator

WAIVERS = pathlib.Path(__file__).with_name("lint.vlt")


def lint(verilog, top, *, waivers=True):
    """Returns (ok, warning lines)."""
    exe = use_verilator()
    cmd = [exe, "--lint-only", "-Wall", "--top-module", top]
    if waivers:
        cmd.append(str(WAIVERS))
    cmd.append(str(verilog))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [l for l in proc.stderr.splitlines() if l.startswith("%")]
    return proc.returncode == 0 and not lines, lines
