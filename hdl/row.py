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

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, ResetSignal, Shape, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .replicas import replica

# The cell ports that a row's columns each have their own of (in a row input, `cols` of them side
# by side); "load_select" only with alpha > 1, "term" only for a term-serial cell with more than
# one weight term. The rest: "load", "load_bank" and "shift" enter at column 0, and "psum_in" (if
# given) is the row's head, the partial sum column 0 starts from.
COLUMN_PORTS = ("activations", "next_bank", "load_weight", "load_select", "term")
# The strobes that enter at column 0 and reach column c through c registers.
STROBES = ("load", "load_bank", "shift")
# What a row's columns put out besides their partial sums: the stages of the weight shift
# register (hdl/cell.py banked_weight), the next row's "load_weight" and "load_select".
STAGED = {"staged_weight": "load_weight", "staged_select": "load_select"}


def column_widths(layouts, alpha, words=1):
    """Bits per column of each of a row's column inputs (hdl.systolic.ArrayLayouts `layouts`), its
    cells' weight shift register `words` words per cell (hdl/cell.py shift_words)."""
    def width(shape):
        return Shape.cast(shape).width
    widths = {"activations": alpha * width(layouts.operand), "next_bank": 1,
              "load_weight": words * width(layouts.weight)}
    if alpha > 1:
        widths["load_select"] = words * width(layouts.select)
    if layouts.term is not None:
        widths["term"] = width(layouts.term)
    return widths


def build_row(m, inputs, *, cols, chain_width, add_cell, suffix):
    """Add one row into module `m` and return its outputs: "psum_out", its sum (the last cell's
    output), and each of STAGED present, its columns' weight stages side by side (column 0 low).
    `inputs` maps each column input (COLUMN_PORTS) to its vector of `cols` columns, and each of
    STROBES to column 0's, which reaches column c through c registers. The cells' partial sums
    run left to right from "psum_in" if `inputs` has it (the row's head, hdl/systolic.py), else
    from zero. `add_cell(m, name, column, ports)` adds one cell and returns its outputs
    ("psum_out" and STAGED); column c's cell is named "cell" + suffix(c), its strobe registers
    <strobe> + suffix(c)."""
    columns = {name: Value.cast(value) for name, value in inputs.items() if name in COLUMN_PORTS}
    # The strobes after column 0 are reset-less: one a reset leaves in flight writes or shifts a
    # bank that is empty after the reset, and the load that fills that bank comes behind it
    # through the same registers, so it overwrites that weight before the bank computes.
    strobes = {name: inputs[name] for name in STROBES}
    psum = inputs.get("psum_in", Const(0, signed(chain_width)))
    staged = {name: [] for name in STAGED if STAGED[name] in columns}
    for c in range(cols):
        if c:
            registered = {}
            for name, strobe in strobes.items():
                # Every row's copies hold the same bits: replicas, so that synthesis does not
                # merge them into one register per column that drives the whole column.
                registered[name] = replica(1, f"{name}{suffix(c)}")
                m.d.sync += registered[name].eq(strobe)
            strobes = registered
        ports = {name: vector.word_select(c, len(vector) // cols) for name, vector in columns.items()}
        ports.update(psum_in=psum, **strobes)
        outputs = add_cell(m, f"cell{suffix(c)}", c, ports)
        psum = outputs["psum_out"]
        for name in staged:
            staged[name].append(outputs[name])
    return {"psum_out": psum, **{name: Cat(values) for name, values in staged.items()}}


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
    load, load_bank, shift : In(1)      column 0's strobes
    psum_in        : In(signed(chain_width))    the row's head (only with `head`)
    psum_out       : Out(signed(chain_width))   the row's sum
    staged_weight, staged_select : Out(cols * width)    its weight stages, the next row's inputs
    """

    def __init__(self, *, cols, widths, chain_width, cell_module, head=False):
        self.cols, self.chain_width, self.cell_module = cols, chain_width, cell_module
        self.widths = widths
        super().__init__({
            **{name: In(cols * width) for name, width in widths.items()},
            **{name: In(1) for name in STROBES},
            **({"psum_in": In(signed(chain_width))} if head else {}),
            "psum_out": Out(signed(chain_width)),
            **{name: Out(cols * widths[source]) for name, source in STAGED.items() if source in widths},
        })

    def add_cell(self, m, name, column, ports):
        outputs = {"psum_out": Signal(signed(self.chain_width), name=f"{name}_psum")}
        for staged, source in STAGED.items():
            if source in self.widths:
                outputs[staged] = Signal(self.widths[source], name=f"{name}_{staged}")
        m.submodules[name] = instantiate(self.cell_module, outputs, ports)
        return outputs

    def elaborate(self, platform):
        m = Module()
        outputs = {name for name, member in self.signature.members.items() if member.flow == Out}
        inputs = {name: getattr(self, name) for name in self.signature.members if name not in outputs}
        built = build_row(m, inputs, cols=self.cols, chain_width=self.chain_width, add_cell=self.add_cell,
                          suffix=lambda c: f"_c{c}")
        m.d.comb += [getattr(self, name).eq(value) for name, value in built.items()]
        return m
