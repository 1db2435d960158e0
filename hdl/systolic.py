"""The weight-stationary column-combining systolic array (Kung, McDanel, Zhang, ASPLOS 2019).

Dataflow
--------
Rows are output channels, columns are column groups. Cell (r, c) holds a weight and a select index
and adds its product into the partial sum running left to right along row r, one register per cell.
A vector enters the array at column 0 and reaches column c after c clocks, so the activations of
group c are delayed by c clocks (the input skew), and each vector carries a token (valid, weight
bank, flags, accumulator address) down a pipeline beside it. Activations are broadcast down each
column rather than pipelined from row to row: on an FPGA the fan-out is cheap, and it makes every
row's result leave the array in the same clock, so no output de-skew buffer is needed.

Tiles and accumulation
----------------------
A layer larger than the array is cut into tiles of R rows x C groups. The partial sums of the tiles
of one output block are accumulated *after* the array, in an accumulator memory of `max_batch`
vectors of R sums, rather than by feeding them back through a partial-sum input: the host then
streams each activation tile once and receives only finished outputs, which is what matters when
the host link (a UART) is the bottleneck. Each activation beat says whether it starts (`clear`) or
finishes (`emit`) an accumulation; only finishing beats produce a result beat.

Weights are double-buffered: two banks per cell. The next tile's weights shift into the idle bank
while the current tile computes, and a bank becomes writable again once no vector in flight in the
array still uses it. A bank is filled by R beats, one row each, shifted in from the bottom: after R
beats the first beat sits in row 0.

Stalls: the whole pipeline advances whenever the result register is empty or being read, so a
blocked result stream stalls the array without losing or duplicating a beat.

Term quantization (mac "tq", DESIGN.md §3): weight registers hold term lists that the front-end
encoded, each activation is HESE-encoded and truncated to `data_terms` terms once, in front of the
stage-0 register, and the skew lines carry its terms down the column; a cell sums the
+-2**(e_w + e_x) of all its term pairs in one clock (hdl/tq.py's parallel datapath) instead of
multiplying. Throughput and latency are those of the integer array.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .cell import ColumnCombiningCell
from .macs import MAC_HARDWARE, value_shape


class ArrayLayouts:
    """Payload layouts of the array's streams, derived from a configuration.

    With mac "tq" a weight is a term list (hdl/hese.py) and so is the operand a cell receives:
    activations arrive as integers and are HESE-encoded at the array's edge.
    """

    def __init__(self, config):
        mac = MAC_HARDWARE[config.mac]
        self.act = value_shape(config.act_width, config.act_signed)
        self.weight = mac.weight_shape(config)
        self.operand = mac.operand_shape(config)
        self.select = unsigned(config.select_width)
        row = {"weights": data.ArrayLayout(self.weight, config.cols)}
        if config.alpha > 1:
            row["selects"] = data.ArrayLayout(self.select, config.cols)
        self.weight_row = data.StructLayout(row)
        self.activations = data.StructLayout({
            # Group g's activation i is element g * alpha + i.
            "data": data.ArrayLayout(self.act, config.cols * config.alpha),
            "last": 1,    # last vector of this tile: the next vector uses the next weight tile
            "clear": 1,   # first tile of an output block: accumulate from zero
            "emit": 1,    # last tile of an output block: send the accumulated sums out
        })
        self.results = data.ArrayLayout(signed(config.acc_width), config.rows)
        self.token = data.StructLayout({
            "valid": 1,
            "bank": 1,
            "last": 1,
            "clear": 1,
            "emit": 1,
            "addr": range(max(config.max_batch, 2)),
        })


class SystolicArray(wiring.Component):
    """An R x C column-combining systolic array with streaming weights, activations and results.

    `config` is a spec.array.ArrayConfig: every width, the MAC style and the latency come from it.

    Members
    -------
    weights     : In(stream.Signature(layouts.weight_row))  R beats per tile, row 0 first.
    activations : In(stream.Signature(layouts.activations)) one vector per beat.
    results     : Out(stream.Signature(layouts.results))    one beat per `emit` vector.
    """

    def __init__(self, config):
        self.config = config
        self.layouts = ArrayLayouts(config)
        super().__init__({
            "weights": In(stream.Signature(self.layouts.weight_row)),
            "activations": In(stream.Signature(self.layouts.activations)),
            "results": Out(stream.Signature(self.layouts.results)),
        })

    @property
    def latency(self):
        """Clocks from an activation handshake to its result being valid, without stalls."""
        return self.config.latency

    def elaborate(self, platform):
        m = Module()
        cfg, lay = self.config, self.layouts
        rows, cols, alpha = cfg.rows, cfg.cols, cfg.alpha
        banks = cfg.banks
        mac = MAC_HARDWARE[cfg.mac]

        # The pipeline moves unless a result is waiting and not being taken.
        advance = Signal()
        m.d.comb += advance.eq(~self.results.valid | self.results.ready)

        # Token pipeline: stage c travels beside the vector while column c computes on it;
        # stage `cols` is aligned with the finished row sums, stage `cols + 1` with the result.
        tokens = [Signal(lay.token, name=f"token_{k}") for k in range(cols + 2)]
        with m.If(advance):
            for k in range(1, cols + 2):
                m.d.sync += tokens[k].eq(tokens[k - 1])

        # Weight banks: bank[b][r][c] and its select, shifted in one row per weight beat.
        weight = [[[Signal(lay.weight, name=f"w_b{b}_r{r}_c{c}") for c in range(cols)]
                   for r in range(rows)] for b in range(banks)]
        # Dense cells (alpha = 1) have no select registers at all.
        select = [[[Signal(lay.select, name=f"s_b{b}_r{r}_c{c}") if alpha > 1 else None
                    for c in range(cols)] for r in range(rows)] for b in range(banks)]
        full = Signal(banks)
        # With a single bank both indices are the constant 0 rather than zero-width registers.
        load_bank = Signal(name="load_bank") if banks == 2 else Const(0, 1)
        compute_bank = Signal(name="compute_bank") if banks == 2 else Const(0, 1)
        load_row = Signal(range(max(rows, 2)))

        # A bank is in use while any vector in columns 0..cols-1 still reads it.
        in_use = Signal(banks)
        for b in range(banks):
            m.d.comb += in_use[b].eq(Cat(t.valid & (t.bank == b) for t in tokens[:cols]).any())

        m.d.comb += self.weights.ready.eq(~full.bit_select(load_bank, 1) &
                                          ~in_use.bit_select(load_bank, 1))
        with m.If(self.weights.valid & self.weights.ready):
            for b in range(banks):
                with m.If(load_bank == b):
                    for c in range(cols):
                        for r in range(rows - 1):
                            m.d.sync += weight[b][r][c].eq(weight[b][r + 1][c])
                            if alpha > 1:
                                m.d.sync += select[b][r][c].eq(select[b][r + 1][c])
                        m.d.sync += weight[b][rows - 1][c].eq(self.weights.payload.weights[c])
                        if alpha > 1:
                            m.d.sync += select[b][rows - 1][c].eq(self.weights.payload.selects[c])
            with m.If(load_row == rows - 1):
                m.d.sync += load_row.eq(0)
                m.d.sync += full.bit_select(load_bank, 1).eq(1)
                if banks == 2:
                    m.d.sync += load_bank.eq(~load_bank)
            with m.Else():
                m.d.sync += load_row.eq(load_row + 1)

        # Issue: one vector per clock while the current bank is full and the pipeline moves.
        batch_addr = Signal(range(max(cfg.max_batch, 2)))
        accept = Signal()
        beat = self.activations.payload
        m.d.comb += [
            self.activations.ready.eq(advance & full.bit_select(compute_bank, 1)),
            accept.eq(self.activations.valid & self.activations.ready),
        ]
        with m.If(advance):
            m.d.sync += [
                tokens[0].valid.eq(accept),
                tokens[0].bank.eq(compute_bank),
                tokens[0].last.eq(beat.last),
                tokens[0].clear.eq(beat.clear),
                tokens[0].emit.eq(beat.emit),
                tokens[0].addr.eq(batch_addr),
            ]
        with m.If(accept):
            with m.If(beat.last):
                m.d.sync += [
                    batch_addr.eq(0),
                    full.bit_select(compute_bank, 1).eq(0),
                ]
                if banks == 2:
                    m.d.sync += compute_bank.eq(~compute_bank)
            with m.Elif(batch_addr == cfg.max_batch - 1):
                m.d.sync += batch_addr.eq(0)
            with m.Else():
                m.d.sync += batch_addr.eq(batch_addr + 1)

        # The MAC style's operand of every activation, made once at the array's edge (before the
        # stage-0 register; a TQ array HESE-encodes it), so the skew lines carry it to the column.
        operands = [mac.edge_operand(m, cfg, beat.data[k], f"hese_{k}") for k in range(cols * alpha)]
        group_input = lambda g: Cat(operands[g * alpha:(g + 1) * alpha])

        # Input skew: group g is registered at stage 0 and delayed g more clocks.
        group_layout = data.ArrayLayout(lay.operand, alpha)
        skewed = []
        for g in range(cols):
            line = [Signal(group_layout, name=f"x_g{g}_d{d}") for d in range(g + 1)]
            with m.If(advance):
                m.d.sync += line[0].eq(group_input(g))
                for d in range(1, g + 1):
                    m.d.sync += line[d].eq(line[d - 1])
            skewed.append(line[g])

        # The cells.
        multiply = mac.multiply(cfg)
        row_sums = []
        for r in range(rows):
            psum = Const(0, signed(cfg.acc_width))
            for c in range(cols):
                cell = ColumnCombiningCell(alpha=alpha, act_shape=lay.operand, weight_shape=lay.weight,
                                           acc_width=cfg.acc_width, multiply=multiply)
                m.submodules[f"cell_r{r}_c{c}"] = cell
                bank = tokens[c].bank if banks == 2 else 0
                m.d.comb += [
                    cell.activations.eq(skewed[c]),
                    cell.weight.eq(Array(Value.cast(weight[b][r][c]) for b in range(banks))[bank]),
                    cell.psum_in.eq(psum),
                    cell.enable.eq(advance),
                ]
                if alpha > 1:
                    m.d.comb += cell.select.eq(Array(select[b][r][c] for b in range(banks))[bank])
                psum = cell.psum_out
            row_sums.append(psum)

        # Accumulator: partial sums of the tiles of one output block, one entry per vector.
        acc_mem = memory.Memory(shape=lay.results, depth=max(cfg.max_batch, 2), init=[])
        m.submodules.acc_mem = acc_mem
        acc_write = acc_mem.write_port()
        # Transparent: with one-vector tiles, a vector reads the entry written in the same clock.
        acc_read = acc_mem.read_port(transparent_for=(acc_write,))
        sums = Signal(lay.results)
        at_sums, at_result = tokens[cols], tokens[cols + 1]
        for r in range(rows):
            m.d.comb += sums[r].eq(row_sums[r] + Mux(at_sums.clear, 0, acc_read.data[r]))
        m.d.comb += [
            acc_read.addr.eq(tokens[cols - 1].addr),
            acc_read.en.eq(advance),
            acc_write.addr.eq(at_sums.addr),
            acc_write.data.eq(sums),
            acc_write.en.eq(advance & at_sums.valid),
        ]
        with m.If(advance):
            m.d.sync += self.results.payload.eq(sums)
        m.d.comb += self.results.valid.eq(at_result.valid & at_result.emit)
        return m
