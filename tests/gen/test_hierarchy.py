"""The generated array is hierarchical (issue 21 item 3, DESIGN.md §9): one cell module and one row
module, each emitted once; the row instantiates the cell once per column and the top the row once
per row, holding no cell of its own. That the hierarchy computes what the array must is checked by
the Verilator benches (tests/sim), which run this Verilog against the golden model."""

import re

import pytest

from gen.design import generate
from hdl.systolic import ROWS_PER_GROUP
from spec import ArrayConfig

TOP = "sparsegen_array"


def modules(verilog):
    """{module name: its text} of a Verilog file (escaped names without their backslash)."""
    found = re.findall(r"^module \\?([^\s(]+)\s*\(.*?^endmodule", verilog, re.M | re.S)
    bodies = re.findall(r"^module .*?^endmodule", verilog, re.M | re.S)
    assert len(found) == len(bodies)
    return dict(zip(found, bodies, strict=True))


def instances(body, module):
    """Names of the instances of `module` in a module's text."""
    return re.findall(rf"^\s*{re.escape(module)}\s+(\w+)\s*\(", body, re.M)


@pytest.mark.parametrize("config", [
    # More rows than one group of rows (ROWS_PER_GROUP): rows of several groups share the module.
    ArrayConfig(rows=ROWS_PER_GROUP + 2, cols=5, alpha=2),
    ArrayConfig(rows=3, cols=4, alpha=1, double_buffer=False),
    ArrayConfig(rows=ROWS_PER_GROUP + 1, cols=3, alpha=3, mac="tq", weight_terms=2, data_terms=3),
    ArrayConfig(rows=ROWS_PER_GROUP + 1, cols=3, alpha=3, mac="tq-serial", weight_terms=2, data_terms=3),
], ids=["int_a2", "dense_single_bank", "tq", "tq_serial"])
def test_one_row_module_instantiated_once_per_row(config):
    verilog = generate(config).verilog
    found = modules(verilog)
    names = list(found)
    assert names.count(f"{TOP}_row") == 1 and names.count(f"{TOP}_cell") == 1
    top, row = found[TOP], found[f"{TOP}_row"]
    assert instances(top, f"{TOP}_row") == [f"row_{r}" for r in range(config.rows)]
    assert instances(row, f"{TOP}_cell") == [f"cell_c{c}" for c in range(config.cols)]
    # No cell anywhere but in the row module, and no row inside another module.
    for name, body in found.items():
        if name != f"{TOP}_row":
            assert not instances(body, f"{TOP}_cell"), name
        if name != TOP:
            assert not instances(body, f"{TOP}_row"), name
    # A row's inputs are named registers (its group's copies), not per-row copies of the columns'
    # wires.
    first = re.search(r"^\s*\w+_row row_0\s*\((.*?)\);", top, re.M | re.S).group(1)
    assert re.search(r"\.activations\(activations_g0\)", first)


@pytest.mark.parametrize("alpha", [1, 3])
def test_weights_shift_up_each_column_from_row_to_row(alpha):
    """A row's weights (and selects) come from the weight stages of the row below it, the last
    row's from one entry register per column, the first row's stages going nowhere: no bus along
    a column reaches every row's banks (hdl/systolic.py)."""
    config = ArrayConfig(rows=ROWS_PER_GROUP + 2, cols=3, alpha=alpha)
    top = modules(generate(config).verilog)[TOP]
    ports = {}
    for r in range(config.rows):
        text = re.search(rf"^\s*\w+_row row_{r}\s*\((.*?)\);", top, re.M | re.S).group(1)
        ports[r] = dict(re.findall(r"\.(\w+)\(([^()]*)\)", text))
    names = ["weight", "select"] if alpha > 1 else ["weight"]
    if alpha == 1:
        assert "load_select" not in ports[0] and "staged_select" not in ports[0]
    for name in names:
        assert ports[config.rows - 1][f"load_{name}"] == f"load_{name}_entry"
        for r in range(config.rows - 1):
            assert ports[r][f"load_{name}"] == ports[r + 1][f"staged_{name}"] == f"row_{r + 1}_staged_{name}"
        assert ports[0][f"staged_{name}"] not in {ports[r][f"load_{name}"] for r in ports}


def test_the_top_holds_no_per_cell_logic():
    """The top's text grows with the rows and columns (token pipeline, skew lines, row instances,
    accumulator), not with their product: from 8x8 to 16x16 it grows 1.7x (2.9x when the top held
    the cells and their strobe registers)."""
    def top_size(n):
        return len(modules(generate(ArrayConfig(rows=n, cols=n, alpha=2)).verilog)[TOP])
    assert top_size(16) < 2.2 * top_size(8)
