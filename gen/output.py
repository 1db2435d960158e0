"""What every unit's generator shares: one-line errors, and writing the Verilog and its manifest
so that a failure never leaves a half-written design behind."""

import json
import os
import sys


def fail(prog, message):
    """Print a one-line error and return the exit status for bad input."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def output_problem(out):
    """Why `out` cannot receive a design, or None. Checked before anything is generated."""
    if os.path.exists(out) and not os.path.isdir(out):
        return f"output path {out} exists and is not a directory"
    return None


def write_atomically(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


def write_design(out, top, verilog_text, manifest):
    """Write `<top>.v` and `manifest.json` into `out`; returns their paths."""
    os.makedirs(out, exist_ok=True)
    verilog_path = os.path.join(out, f"{top}.v")
    manifest_path = os.path.join(out, "manifest.json")
    write_atomically(verilog_path, verilog_text)
    write_atomically(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return verilog_path, manifest_path
