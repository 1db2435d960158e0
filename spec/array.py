"""The column-combining systolic array's configuration (DESIGN.md §2): the single source of truth.

One frozen dataclass, validated on construction, derives everything the rest of the project needs:
widths, pipeline depth and latency, the cycle formula, the design name and the manifest's ports.
hdl/systolic.py builds the hardware from it, software/ drives its golden and cycle models from it,
gen/ writes it into the manifest, sim/ and fpga/ read it back.
"""

import dataclasses

from .checks import ConfigError, FieldsConfig, check_bool, check_choice, check_int, int_range, signed_width_for
from .macs import MACS
from .ports import clock_and_reset, stream_port
from .terms import term_width

# Multiplier styles: register stages from a cell's registered operands to its registered product.
# "pipelined" computes two partial products (the weight's low and high halves) in one stage and adds
# them in the next, so that a multiplier built from LUTs has half the logic depth per clock
# (DESIGN.md §9); "parallel" computes the whole product in one stage.
PRODUCT_STAGES = {"pipelined": 2, "parallel": 1}
MULTIPLIERS = tuple(PRODUCT_STAGES)

# Widths beyond these are almost certainly typos; they would also blow up synthesis and Verilator.
MAX_DATA_WIDTH = 32
MAX_ACC_WIDTH = 64
MAX_ALPHA = 64
MAX_DIM = 256

TOP = "sparsegen_array"

# Pipeline stages (hdl/systolic.py and hdl/cell.py build exactly these; the RTL's cycle counts are
# asserted equal to the cycle model that reads them).
OPERAND_STAGES = 1          # a cell's operand select (before its product stages)
ACCUMULATE_STAGES = 1       # a cell's partial-sum add (after its product stages)
RESULT_FIFO_LATENCY = 2     # clocks from a write into the result FIFO to its output being valid
RESULT_BUFFER_SLACK = 8     # result FIFO entries beyond the columns

# The array's patterns of weights per column group: what `python -m gen --sparsity` chooses.
# The front-end's pruning methods (software/frontend/sparsity/) each pack onto one of these.
ARRAY_SPARSITY = {
    "dense": "one activation per column, no multiplexer (alpha 1)",
    "colcomb": "column combining: alpha activations per column group, one kept per cell (alpha >= 2)",
}

STREAM_ORDER = """\
Order of the streams (what a host or testbench sends and receives):
  for each chunk, for each row block, for each group block:
      weights:     R beats (row 0 first) of C weights (term lists with mac "tq") and C selects
      activations: n beats of C * alpha activations; flags last / clear / emit
  results: for each chunk, for each row block, n beats of R sums."""


@dataclasses.dataclass(frozen=True)
class ArrayConfig(FieldsConfig):
    """A weight-stationary R x C array of column-combining cells.

    rows, cols     R output channels by C column groups per tile.
    alpha          activations per column group (1 = dense: no multiplexer).
    act_width, act_signed, weight_width, weight_signed
                   operand formats.
    acc_width      partial-sum / accumulator width (signed). Must hold the sum of one tile row
                   without overflow; across tiles the accumulator wraps modulo 2**acc_width.
    multiplier     multiplier style (PRODUCT_STAGES): "pipelined" (the product in two register
                   stages) or "parallel" (in one); either computes one product per cell per clock.
    mac            multiply-accumulate style, a name in spec.macs.MACS: "int" (integer operands),
                   "tq" (term quantization: weights are term lists of `weight_terms` terms,
                   activations keep `data_terms` HESE terms) or "tq-serial" (the same terms, one
                   term pair per cell per clock).
    weight_terms, data_terms
                   term budgets per weight and per activation (styles that use terms only).
    double_buffer  two weight banks per cell, so the next tile loads while this one computes.
    max_batch      input vectors per tile the output accumulator can hold (its depth).
    """

    kind = "array configuration"   # for messages; not a field (no annotation)

    rows: int
    cols: int
    alpha: int = 1
    act_width: int = 8
    act_signed: bool = True
    weight_width: int = 8
    weight_signed: bool = True
    acc_width: int = 32
    multiplier: str = "pipelined"
    double_buffer: bool = True
    max_batch: int = 64
    mac: str = "int"
    weight_terms: int | None = None
    data_terms: int | None = None

    def __post_init__(self):
        self._set("rows", check_int("rows", self.rows, 1, MAX_DIM))
        self._set("cols", check_int("cols", self.cols, 1, MAX_DIM))
        self._set("alpha", check_int("alpha", self.alpha, 1, MAX_ALPHA))
        self._set("act_width", check_int("act_width", self.act_width, 2, MAX_DATA_WIDTH))
        self._set("weight_width", check_int("weight_width", self.weight_width, 2, MAX_DATA_WIDTH))
        self._set("acc_width", check_int("acc_width", self.acc_width, 2, MAX_ACC_WIDTH))
        self._set("max_batch", check_int("max_batch", self.max_batch, 1, 1 << 16))
        check_bool("act_signed", self.act_signed)
        check_bool("weight_signed", self.weight_signed)
        check_bool("double_buffer", self.double_buffer)
        check_choice("multiplier", self.multiplier, MULTIPLIERS)
        check_choice("mac", self.mac, MACS)
        self.mac_style.validate(self)
        if self.acc_width < self.min_acc_width:
            operands = "term-quantized " if self.mac_style.uses_terms else ""
            raise ConfigError(
                f"acc_width {self.acc_width} is too narrow: a row of {self.cols} products of "
                f"{self.act_width}-bit x {self.weight_width}-bit {operands}operands needs {self.min_acc_width} bits")

    # ------------------------------------------------------------------------------------------
    # Derived quantities: hdl/, software/, gen/, sim/ and fpga/ all read them from here.

    @property
    def mac_style(self):
        return MACS[self.mac]

    @property
    def sparsity(self):
        """The array's pattern, a name in ARRAY_SPARSITY."""
        return "dense" if self.alpha == 1 else "colcomb"

    @property
    def select_width(self):
        """Bits of a cell's select index (0 when dense)."""
        return (self.alpha - 1).bit_length()

    @property
    def inputs(self):
        """Activations per input vector of one tile: C groups of alpha."""
        return self.cols * self.alpha

    @property
    def cells(self):
        return self.rows * self.cols

    @property
    def act_range(self):
        return int_range(self.act_width, self.act_signed)

    @property
    def weight_range(self):
        return int_range(self.weight_width, self.weight_signed)

    @property
    def operand_ranges(self):
        """(activation range, weight range) of the values the cells multiply."""
        return self.mac_style.operand_ranges(self)

    @property
    def product_range(self):
        acts, weights = self.operand_ranges
        corners = [a * w for a in acts for w in weights]
        return min(corners), max(corners)

    @property
    def weight_term_width(self):
        """Bits of one weight term (styles that use terms): valid, sign, exponent."""
        return term_width(self.weight_width, self.weight_signed)

    @property
    def weight_field_width(self):
        """Bits of one weight in a weight beat: the integer, or its term list."""
        return self.mac_style.weight_field_width(self)

    @property
    def min_acc_width(self):
        """Width that holds any sum of `cols` products exactly (one tile row, no wrap)."""
        lo, hi = self.product_range
        return signed_width_for(lo * self.cols, hi * self.cols)

    @property
    def banks(self):
        return 2 if self.double_buffer else 1

    @property
    def product_stages(self):
        return self.mac_style.product_stages(self, PRODUCT_STAGES[self.multiplier])

    @property
    def clocks_per_vector(self):
        """Clocks each activation vector occupies: 1, or with mac "tq-serial" one per term pair
        (weight_terms x data_terms). The cycle model multiplies every tile's vectors by it."""
        return self.mac_style.clocks_per_vector(self)

    @property
    def cell_stages(self):
        """Register stages from a cell's activation inputs to its partial sum: operand select,
        the product's stages, accumulate."""
        return OPERAND_STAGES + self.product_stages + ACCUMULATE_STAGES

    @property
    def latency(self):
        """Clocks from an activation vector's handshake to its result being valid (with
        clocks_per_vector K > 1: from the handshake clock + K - 1, when its last term pair enters).

        The edge register (1), the input skew of the last column (cols - 1), the cell's stages
        (cell_stages), the accumulator's add (1) and the result FIFO (RESULT_FIFO_LATENCY).
        """
        return 1 + (self.cols - 1) + self.cell_stages + 1 + RESULT_FIFO_LATENCY

    @property
    def result_buffer(self):
        """Entries of the result FIFO. A vector is accepted only with a free entry reserved for
        its result, so the array never waits for the result stream; this many entries keep one
        vector per clock flowing while results are taken as they come."""
        return self.cols + RESULT_BUFFER_SLACK

    @property
    def cycle_formula(self):
        """The cycle model (software/golden/cycles.py) as text, for readers of the manifest."""
        k = self.clocks_per_vector
        n = (lambda t: f"n_{t}") if k == 1 else (lambda t: f"{k} n_{t}")
        return ("load_0 = 0; load_t = max(load_{t-1} + R, issue_{t-banks} + " + n("{t-banks}") + " + C); "
                "issue_0 = R; issue_t = max(issue_{t-1} + " + n("{t-1}") + ", load_t + R); "
                "cycles = issue_last + " + n("last") + f" - 1 + latency + 1, latency = {self.latency}")

    @property
    def design_name(self):
        """A name unique to this configuration: <rows>x<cols>_<sparsity>_a<alpha>, then the MAC
        style's suffix and every field that differs from its default (e.g. _acc24, _sb)."""
        name = f"{self.rows}x{self.cols}_{self.sparsity}_a{self.alpha}" + self.mac_style.name_suffix(self)
        if (self.act_width, self.act_signed) != (8, True):
            name += f"_x{'s' if self.act_signed else 'u'}{self.act_width}"
        if (self.weight_width, self.weight_signed) != (8, True):
            name += f"_w{'s' if self.weight_signed else 'u'}{self.weight_width}"
        if self.acc_width != 32:
            name += f"_acc{self.acc_width}"
        if not self.double_buffer:
            name += "_sb"
        if self.max_batch != 64:
            name += f"_b{self.max_batch}"
        if self.multiplier != "pipelined":
            name += f"_{self.multiplier}"
        return name

    @property
    def summary(self):
        """One line for people: '32x32 colcomb array, alpha 8, TQ 2x3 terms, latency 34'."""
        mac = self.mac_style.label(self)
        return (f"{self.rows}x{self.cols} {self.sparsity} array, alpha {self.alpha}"
                f"{', ' + mac if mac else ''}, latency {self.latency}")

    # ------------------------------------------------------------------------------------------
    # Payloads, least significant bit first (software/packing/beats.py packs them from this description).

    @property
    def weight_beat_width(self):
        return self.cols * (self.weight_field_width + self.select_width)

    @property
    def activation_beat_width(self):
        return self.inputs * self.act_width + 3

    @property
    def result_beat_width(self):
        return self.rows * self.acc_width

    def ports(self):
        """Port descriptions for the manifest: names as in the generated Verilog, widths, packing."""
        C, A = self.cols, self.alpha
        weights = [self.mac_style.weight_field(self)]
        if A > 1:
            weights.append({"field": "selects", "count": C, "width": self.select_width,
                            "signed": False, "lsb": C * self.weight_field_width})
        data_bits = self.inputs * self.act_width
        acts = [
            {"field": "data", "count": C * A, "width": self.act_width, "signed": self.act_signed,
             "lsb": 0, "note": "group g's activation i is element g * alpha + i" + self.mac_style.activation_note(self)},
            {"field": "last", "width": 1, "lsb": data_bits, "note": "last vector of the tile"},
            {"field": "clear", "width": 1, "lsb": data_bits + 1, "note": "first tile of an output block"},
            {"field": "emit", "width": 1, "lsb": data_bits + 2, "note": "last tile: emit the sums"},
        ]
        results = [{"field": "sums", "count": self.rows, "width": self.acc_width, "signed": True, "lsb": 0}]
        return [
            *clock_and_reset(),
            stream_port("weights", "in", self.weight_beat_width, weights),
            stream_port("activations", "in", self.activation_beat_width, acts),
            stream_port("results", "out", self.result_beat_width, results),
        ]

    def derived(self):
        return {
            "select_width": self.select_width,
            "inputs_per_vector": self.inputs,
            "min_acc_width": self.min_acc_width,
            "weight_banks": self.banks,
            "result_buffer": self.result_buffer,
            "pipeline": {"edge": 1, "skew": self.cols - 1, "cell": self.cell_stages, "accumulate": 1,
                         "result_fifo": RESULT_FIFO_LATENCY},
            "cells": self.cells,
            **self.mac_style.derived(self),
        }

    def manifest_extras(self):
        return {
            "sparsity": self.sparsity,
            "throughput": ("one activation vector per clock once the pipeline is full" if self.clocks_per_vector == 1
                           else f"one activation vector per {self.clocks_per_vector} clocks (one per term pair) "
                                f"once the pipeline is full"),
            "back_pressure": "activations are accepted only while the result FIFO (result_buffer entries) has "
                             "room for every result in flight; the array itself never stalls",
            "stream_order": STREAM_ORDER,
            "accumulation": "tiles of one output block accumulate in an on-chip memory of max_batch vectors; "
                            "sums wrap modulo 2**acc_width",
        }
