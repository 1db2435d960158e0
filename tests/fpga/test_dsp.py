"""hdl/dsp.py: a DSP cell built for an ECP5 board (its MULT18X18D's own input and output registers)
computes, clock for clock, what the same cell computes with its registers in the fabric and `*`.

Both forms of the cell are simulated by Verilator on the same random inputs (every port random every
clock: weights loaded into either bank, banks switched, every select, extreme operands often); the
instance runs against a behavioural model of the MULT18X18D registers it uses (written here from
Lattice's sysDSP description: input registers A and B, output register, clocked by CLK0 with CE0;
the pipeline register off), so what is checked is the cell's wiring: operand extension, signedness,
product bits and the stages' timing. Yosys's own ECP5 library has the block as a black box only.
"""

import os
import random
import re
import subprocess
import types

import pytest
from amaranth.back import verilog

from hdl.dsp import MULT_WIDTH, PRODUCT_WIDTH, dsp_family, dsp_product
from hdl.macs import MAC_HARDWARE
from sim.toolchain import missing_prerequisites, use_compiler, use_verilator
from spec import ArrayConfig

pytestmark = pytest.mark.skipif(bool(missing_prerequisites()), reason="needs a C++ compiler, make and perl")

ECP5 = types.SimpleNamespace(family="ecp5")     # what the cell asks of a board's platform


def mult18x18d_model():
    """A behavioural MULT18X18D with the ports hdl/dsp.py connects, its input and output
    registers per parameter (CLK0 / NONE) and the pipeline register refused."""
    bits = lambda name, n: ", ".join(f"{name}{i}" for i in reversed(range(n)))  # noqa: E731
    ports = [f"input {bits(p, MULT_WIDTH)}" for p in "ABC"] + [f"output {bits('P', PRODUCT_WIDTH)}"]
    return f"""
module MULT18X18D #(
    parameter REG_INPUTA_CLK = "NONE", parameter REG_INPUTB_CLK = "NONE", parameter REG_INPUTC_CLK = "NONE",
    parameter REG_PIPELINE_CLK = "NONE", parameter REG_OUTPUT_CLK = "NONE",
    parameter GSR = "ENABLED", parameter RESETMODE = "SYNC"
) ({", ".join(ports)}, input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0);
    wire [17:0] a_in = {{{bits('A', MULT_WIDTH)}}};
    wire [17:0] b_in = {{{bits('B', MULT_WIDTH)}}};
    reg [17:0] a_reg = 0, b_reg = 0;
    reg [35:0] p_reg = 0;
    always @(posedge CLK0) if (CE0) begin
        a_reg <= RST0 ? 18'd0 : a_in;
        b_reg <= RST0 ? 18'd0 : b_in;
    end
    wire [17:0] a = REG_INPUTA_CLK == "CLK0" ? a_reg : a_in;
    wire [17:0] b = REG_INPUTB_CLK == "CLK0" ? b_reg : b_in;
    wire [35:0] product = $signed({{{{18{{SIGNEDA & a[17]}}}}, a}}) * $signed({{{{18{{SIGNEDB & b[17]}}}}, b}});
    always @(posedge CLK0) if (CE0) p_reg <= RST0 ? 36'd0 : product;
    assign {{{bits('P', PRODUCT_WIDTH)}}} = REG_OUTPUT_CLK == "CLK0" ? p_reg : product;
    initial if (REG_PIPELINE_CLK != "NONE") $fatal(1, "the model has no pipeline register");
endmodule
"""


def ports_of(text):
    """[(direction, name, width)] of the top module's ports in Amaranth's Verilog."""
    return [(d, name, int(hi) + 1 if hi else 1) for d, hi, name in
            re.findall(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?(?:\[(\d+):0\]\s+)?(\w+)\s*;", text, re.M)]


def verilog_testbench(ports, clocks):
    inputs = [(name, w) for d, name, w in ports if d == "input" and name not in ("clk", "rst")]
    total = sum(w for _, w in inputs)
    lines = ["module tb;", "  reg clk = 0; reg rst = 0;", f"  reg [{total - 1}:0] stim [0:{clocks - 1}];"]
    lines += [f"  reg [{w - 1}:0] {name};" for name, w in inputs]
    lines.append("  wire [63:0] psum_out;")
    connections = ", ".join([".clk(clk)", ".rst(rst)"] + [f".{n}({n})" for n, _ in inputs] + [".psum_out(psum_out)"])
    lines += [f"  top dut({connections});", "  integer i, f;", "  initial begin",
              '    $readmemh("stim.hex", stim); f = $fopen("out.txt", "w");',
              f"    for (i = 0; i < {clocks}; i = i + 1) begin",
              f"      {{{', '.join(n for n, _ in inputs)}}} = stim[i];",
              "      #1 clk = 1; #1 clk = 0;", '      $fwrite(f, "%h\\n", psum_out);', "    end",
              "    $fclose(f); $finish;", "  end", "endmodule"]
    return "\n".join(lines), inputs


def simulate(cell_verilog, extra, stimulus, inputs, work):
    """psum_out after each clock, as Verilator runs the cell on `stimulus` (one dict per clock)."""
    os.makedirs(work, exist_ok=True)
    ports = ports_of(cell_verilog)
    tb, order = verilog_testbench(ports, len(stimulus))
    assert [n for n, _ in order] == [n for n, _ in inputs]
    for name, text in (("top.v", cell_verilog), ("model.v", extra), ("tb.v", tb)):
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    with open(os.path.join(work, "stim.hex"), "w") as f:
        for values in stimulus:
            word = 0
            for name, w in inputs:
                word = (word << w) | (values[name] & ((1 << w) - 1))
            f.write(f"{word:x}\n")
    use_compiler()
    verilator = use_verilator()
    subprocess.run([verilator, "--binary", "-O0", "-CFLAGS", "-std=c++20", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", "tb",
                    "top.v", "model.v", "tb.v", "-o", "sim"], cwd=work, check=True, capture_output=True)
    subprocess.run([os.path.join(work, "obj_dir", "sim")], cwd=work, check=True, capture_output=True)
    with open(os.path.join(work, "out.txt")) as f:
        return [int(line, 16) for line in f]


def random_stimulus(inputs, config, clocks, seed):
    """Every input random every clock; activations and weights often at their extremes."""
    rng = random.Random(seed)
    lo, hi = config.act_range
    extremes = [lo, hi, 0, -1 if lo < 0 else 1, lo + 1, hi - 1]

    def operand(width, signed_range):
        lo_, hi_ = signed_range
        return rng.choice([lo_, hi_, 0]) if rng.random() < 0.3 else rng.randint(lo_, hi_)
    stimulus = []
    for _ in range(clocks):
        values = {}
        for name, w in inputs:
            if name == "activations":
                word = 0
                for k in range(config.alpha):
                    value = rng.choice(extremes) if rng.random() < 0.3 else rng.randint(lo, hi)
                    word |= (value & ((1 << config.act_width) - 1)) << (k * config.act_width)
                values[name] = word
            elif name == "load_weight":
                wlo, whi = config.weight_range
                values[name] = operand(w, (wlo, whi)) & ((1 << w) - 1)
            else:
                values[name] = rng.getrandbits(w)
        stimulus.append(values)
    return stimulus


@pytest.mark.parametrize("alpha,act_signed,multiplier", [
    (4, True, "pipelined"),
    pytest.param(1, False, "parallel", marks=pytest.mark.slow),
    pytest.param(8, False, "pipelined", marks=pytest.mark.slow),
    pytest.param(2, True, "parallel", marks=pytest.mark.slow),
])
def test_dsp_block_cell_equals_the_fabric_cell_clock_for_clock(tmp_path, alpha, act_signed, multiplier):
    config = ArrayConfig(rows=1, cols=1, alpha=alpha, act_signed=act_signed, multiplier=multiplier)
    hardware = MAC_HARDWARE["int"]
    block = verilog.convert(hardware.cell(config, acc_width=24, dsp=True), name="top", platform=ECP5,
                            emit_src=False)
    fabric = verilog.convert(hardware.cell(config, acc_width=24, dsp=True), name="top", emit_src=False)
    assert "MULT18X18D" in block and "MULT18X18D" not in fabric
    def register(text, name):
        return re.search(rf"reg\s+(signed\s+)?(\[\d+:0\]\s+)?{name}\b", text)
    assert register(fabric, "operand") and register(fabric, "product")
    if config.product_stages == 2:
        # The operand stage in the fabric; both product stages are the block's registers.
        assert register(block, "operand") and register(block, "weight") and not register(block, "product")
    else:
        assert not register(block, "operand") and not register(block, "product")
    inputs = [(n, w) for d, n, w in ports_of(fabric) if d == "input" and n not in ("clk", "rst")]
    assert [(n, w) for d, n, w in ports_of(block) if d == "input" and n not in ("clk", "rst")] == inputs
    stimulus = random_stimulus(inputs, config, 3000, seed=alpha)
    got = simulate(block, mult18x18d_model(), stimulus, inputs, str(tmp_path / "block"))
    want = simulate(fabric, "", stimulus, inputs, str(tmp_path / "fabric"))
    # The first clocks hold the registers' power-up values; from then on every psum is the same.
    settle = 1 + config.product_stages + 1
    assert got[settle:] == want[settle:]
    assert len(set(want[settle:])) > 100          # the partial sums do move


def test_dsp_product_refuses_what_the_block_cannot_hold():
    from amaranth.hdl import Module, Signal, signed
    m = Module()
    with pytest.raises(ValueError, match="do not fit"):
        dsp_product(m, Signal(18), Signal(8), shape=signed(27))
    with pytest.raises(ValueError, match="wider"):
        dsp_product(m, Signal(signed(18)), Signal(signed(18)), shape=signed(37))
    with pytest.raises(ValueError, match="family"):
        dsp_product(m, Signal(8), Signal(8), shape=signed(17), family="ice40")
    assert dsp_family(ECP5) == "ecp5" and dsp_family(None) is None
    assert dsp_family(types.SimpleNamespace(family="iCE40")) is None


def test_board_platforms_select_the_block_on_ecp5_only():
    from fpga.boards import board
    assert dsp_family(board("ulx3s-85f").make_platform()) == "ecp5"
    assert dsp_family(board("orangecrab-25f").make_platform()) == "ecp5"
    assert dsp_family(board("icebreaker").make_platform()) is None
