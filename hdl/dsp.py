"""A cell's multiplier in a DSP block, with the block's own registers (DESIGN.md §9).

Yosys maps `a * b` into an ECP5 MULT18X18D without any of the block's registers: the cell's operand
and product registers stay in the fabric, and every clock the multiplier's inputs and output cross
from wherever the placer put those registers to the block's fixed site and back (a 16x16 array on
the ULX3S: 12.0 ns from an operand register through the block to a product register, 63% of it
routing, the block 38 rows away). Here the block is instantiated with its input registers (A and B)
and its output register switched on, so the paths into and out of it begin or end at the block.
With two product stages (`--multiplier pipelined`, the default) they are the two product stages:

    operand select -> operand and weight registers (fabric) -> A, B input registers -> multiplier -> output register -> add

and only the registered operand and weight cross to the block's site, with no logic on the way:
the cell's operand multiplexer, its weight banks and their wires stay beside the rest of the cell
(the ULX3S α = 8 16x16 at 100 MHz, when the block's input registers took the multiplexer's output,
reached 96.5 MHz: a cell's select -> its 8-way multiplexer -> the block's A input, 10.4 ns, 87%
routing; with the fabric registers, 107.0 MHz). With one product stage the input registers are the
operand stage and the output register the product stage:

    operand select (fabric) -> A, B input registers -> multiplier -> output register -> add

The stage count, and with it the cell's latency and the cycle model, does not change.

Used only when the cell is elaborated for an ECP5 platform (a board build); everywhere else (gen,
simulation) the cell keeps its registers and `a * b`. tests/fpga/test_dsp.py simulates the
instance against a behavioural model of the registers it uses (tests/fpga/mult18x18d.v).
"""

from amaranth.hdl import ClockSignal, Const, Instance, Signal, signed

from .platforms import family_of

MULT_WIDTH = 18     # the MULT18X18D's operands, two's complement with SIGNEDA = SIGNEDB = 1
PRODUCT_WIDTH = 36


def dsp_family(platform):
    """The family whose DSP block registers `dsp_product` can use for `platform` ("ecp5"), or None
    (no platform, as for gen and simulation, or another family)."""
    return "ecp5" if family_of(platform) == "ecp5" else None


def fits_dsp(*values):
    """Whether each value, extended by its own signedness, is one two's complement operand."""
    return all(len(v) + (0 if v.shape().signed else 1) <= MULT_WIDTH for v in values)


def dsp_product(m, a, b, *, shape, family="ecp5"):
    """`a * b` (`shape`, at most 36 bits) from one MULT18X18D whose A, B and output registers are
    on: the product of the `a` and `b` of a clock appears two clocks later. `a` and `b` are the
    unregistered operands (the block's input registers replace the caller's)."""
    if family != "ecp5":
        raise ValueError(f"no DSP block with registers for family {family!r}")
    if not fits_dsp(a, b):
        raise ValueError(f"operands of {len(a)} and {len(b)} bits do not fit a {MULT_WIDTH}x{MULT_WIDTH} multiplier")
    if shape.width > PRODUCT_WIDTH:
        raise ValueError(f"a product of {shape.width} bits is wider than the block's {PRODUCT_WIDTH}")
    # Each operand extended by its own signedness: an unsigned value stays non-negative as an
    # 18-bit two's complement number.
    wide_a, wide_b = Signal(signed(MULT_WIDTH), name="dsp_a"), Signal(signed(MULT_WIDTH), name="dsp_b")
    m.d.comb += [wide_a.eq(a), wide_b.eq(b)]
    p = Signal(PRODUCT_WIDTH)
    ports = {f"i_A{i}": wide_a[i] for i in range(MULT_WIDTH)}
    ports.update({f"i_B{i}": wide_b[i] for i in range(MULT_WIDTH)})
    ports.update({f"i_C{i}": Const(0, 1) for i in range(MULT_WIDTH)})
    ports.update({f"o_P{i}": p[i] for i in range(PRODUCT_WIDTH)})
    m.submodules += Instance(
        "MULT18X18D",
        p_REG_INPUTA_CLK="CLK0", p_REG_INPUTB_CLK="CLK0", p_REG_OUTPUT_CLK="CLK0",
        p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
        p_GSR="DISABLED", p_RESETMODE="SYNC",
        i_CLK0=ClockSignal(), i_CE0=Const(1, 1), i_RST0=Const(0, 1),
        i_SIGNEDA=Const(1, 1), i_SIGNEDB=Const(1, 1), i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
        **ports)
    product = Signal(shape, name="dsp_product")
    m.d.comb += product.eq(p[:shape.width])
    return product
