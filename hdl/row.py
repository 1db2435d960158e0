"""One row of the systolic array: `cols` cells chained by their partial sums, and the row's load
strobe passed from cell to cell through a register each (hdl/systolic.py explains the dataflow).

The rows of an array are identical but for their inputs, so the generator emits the row once, as a
module of its own (SystolicRow), and the array instantiates it R times: a 32x32 array's Verilog is
then one cell module, one row module of 32 cell instances and a top of 32 row instances, instead of
a top holding 1,024 cells and their wires. The array keeps its cells in its own module (build_row
into the array's module) where rows differ -- a board build whose first cells use DSP blocks -- or
where Amaranth's simulator must see the cells (it simulates no Instance).

A row's inputs are plain bit vectors, one per cell port that differs between columns, the columns
side by side (column 0 in the low bits): a layout's fields would each be a named wire in the
Verilog of every module they pass through.
"""

from amaranth.hdl import ClockSignal, Const, Instance, Module, ResetSignal, Shape, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .replicas import replica

# The cell ports that a row's columns each have their own of (in a row input, `cols` of them side
# by side); "load_select" only with alpha > 1, "term" only for a term-serial cell with more than
# one weight term. The rest: "load" and "load_bank" enter at column 0, and "psum_in" (if given) is
# the row's head, the partial sum column 0 starts from.
COLUMN_PORTS = ("activations", "next_bank", "load_weight", "load_select", "term")


def column_widths(layouts, alpha):
    """Bits per column of each of a row's column inputs (hdl.systolic.ArrayLayouts `layouts`)."""
    def width(shape):
        return Shape.cast(shape).width
    widths = {"activations": alpha * width(layouts.operand), "next_bank": 1, "load_weight": width(layouts.weight)}
    if alpha > 1:
        widths["load_select"] = width(layouts.select)
    if layouts.term is not None:
        widths["term"] = width(layouts.term)
    return widths


def build_row(m, inputs, *, cols, chain_width, add_cell, suffix):
    """Add one row into module `m` and return its sum (the last cell's output). `inputs` maps each
    column input (COLUMN_PORTS) to its vector of `cols` columns, and "load" and "load_bank" to
    column 0's strobe and bank, which reach column c through c registers. The cells' partial sums
    run left to right from "psum_in" if `inputs` has it (the row's head, hdl/systolic.py), else
    from zero. `add_cell(m, name, column, ports)` adds one cell and returns its partial-sum output;
    column c's cell is named "cell" + suffix(c), its strobe registers "load" + suffix(c) and
    "load_bank" + suffix(c)."""
    columns = {name: Value.cast(value) for name, value in inputs.items() if name in COLUMN_PORTS}
    # The strobes after column 0 are reset-less: one a reset leaves in flight writes a bank that
    # is empty after the reset, and the load that fills that bank comes behind it through the
    # same registers, so it overwrites that weight before the bank computes.
    strobe, strobe_bank = inputs["load"], inputs["load_bank"]
    psum = inputs.get("psum_in", Const(0, signed(chain_width)))
    for c in range(cols):
        if c:
            next_strobe = Signal(name=f"load{suffix(c)}", reset_less=True)
            # Every row's bank registers hold the same bit: replicas, so that synthesis does not
            # merge them into one register per column that drives the whole column.
            next_bank = replica(1, f"load_bank{suffix(c)}")
            m.d.sync += [next_strobe.eq(strobe), next_bank.eq(strobe_bank)]
            strobe, strobe_bank = next_strobe, next_bank
        ports = {name: vector.word_select(c, len(vector) // cols) for name, vector in columns.items()}
        ports.update(psum_in=psum, load=strobe, load_bank=strobe_bank)
        psum = add_cell(m, f"cell{suffix(c)}", c, ports)
    return psum


def instantiate(module_name, outputs, inputs):
    """An Instance of the emitted module `module_name` in the sync domain: `outputs` and `inputs`
    map its port names to the signals they drive and the values they read."""
    return Instance(module_name, i_clk=ClockSignal("sync"), i_rst=ResetSignal("sync"),
                    **{f"o_{port}": signal for port, signal in outputs.items()},
                    **{f"i_{port}": Value.cast(value) for port, value in inputs.items()})


class SystolicRow(wiring.Component):
    """A row of `cols` cells as a module of its own, for the generator to emit once; its cells are
    instances of the module `cell_module` (emitted once too).

    Members
    -------
    <column input> : In(cols * width)   for each name of `widths` (column_widths), column 0 low
    load, load_bank : In(1)             column 0's load strobe and the bank it writes
    psum_in        : In(signed(chain_width))    the row's head (only with `head`)
    psum_out       : Out(signed(chain_width))   the row's sum
    """

    def __init__(self, *, cols, widths, chain_width, cell_module, head=False):
        self.cols, self.chain_width, self.cell_module = cols, chain_width, cell_module
        super().__init__({
            **{name: In(cols * width) for name, width in widths.items()},
            "load": In(1),
            "load_bank": In(1),
            **({"psum_in": In(signed(chain_width))} if head else {}),
            "psum_out": Out(signed(chain_width)),
        })

    def add_cell(self, m, name, column, ports):
        psum_out = Signal(signed(self.chain_width), name=f"{name}_psum")
        m.submodules[name] = instantiate(self.cell_module, {"psum_out": psum_out}, ports)
        return psum_out

    def elaborate(self, platform):
        m = Module()
        inputs = {name: getattr(self, name) for name in self.signature.members if name != "psum_out"}
        psum = build_row(m, inputs, cols=self.cols, chain_width=self.chain_width, add_cell=self.add_cell,
                         suffix=lambda c: f"_c{c}")
        m.d.comb += self.psum_out.eq(psum)
        return m
