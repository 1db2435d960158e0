"""What Verilator needs from the machine (a C++ compiler, make, perl): checked before any build,
and reported in one line that names exactly what is missing and the Debian packages."""

import os
import shutil

import pytest

from sim import runner, toolchain


@pytest.fixture
def only(monkeypatch):
    """only("make", "perl"): from now on shutil.which finds just these programs."""
    def restrict(*names):
        monkeypatch.setattr(shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}" if name in names else None)
    monkeypatch.delenv("CXX", raising=False)
    return restrict


@pytest.mark.parametrize("present, message", [
    ((), "Verilator needs a C++ compiler (c++, g++ or clang++), make and perl, not found on PATH; install "
         "them (Debian/Ubuntu: sudo apt-get install g++ make perl)"),
    (("c++", "perl"), "Verilator needs make, not found on PATH; install it (Debian/Ubuntu: sudo apt-get "
                      "install make)"),
    (("make",), "Verilator needs a C++ compiler (c++, g++ or clang++) and perl, not found on PATH; install "
                "them (Debian/Ubuntu: sudo apt-get install g++ perl)"),
    (("g++", "make"), "Verilator needs perl, not found on PATH; install it (Debian/Ubuntu: sudo apt-get "
                      "install perl)"),
])
def test_missing_prerequisites_are_named_in_one_line(only, present, message):
    only(*present)
    with pytest.raises(toolchain.ToolchainError) as error:
        toolchain.check_prerequisites()
    assert str(error.value) == message


def test_any_one_compiler_will_do_and_make_is_told_which(only, monkeypatch):
    monkeypatch.setenv("MAKEFLAGS", "OPT_FAST=-O0 CXX=/old/c++")
    only("clang++", "make", "perl")
    toolchain.check_prerequisites()
    assert toolchain.use_compiler() == "/usr/bin/clang++"
    # Verilator's makefile calls `c++`; without one, make is given the compiler that exists.
    assert os.environ["MAKEFLAGS"].split() == ["OPT_FAST=-O0", "CXX=/usr/bin/clang++",
                                                        "LINK=/usr/bin/clang++"]
    monkeypatch.setenv("CXX", "g++")       # a user's $CXX comes first, if it exists
    only("g++", "clang++", "make", "perl")
    assert toolchain.find_cxx() == "/usr/bin/g++"


def test_build_checks_before_writing_anything(only, monkeypatch, tmp_path):
    monkeypatch.setenv(runner.CACHE_ENV, str(tmp_path / "cache"))
    only("perl")
    with pytest.raises(toolchain.ToolchainError, match=r"^Verilator needs a C\+\+ compiler .* and make, "):
        runner.build(tmp_path / "no-design-here")
    assert list(tmp_path.iterdir()) == []

