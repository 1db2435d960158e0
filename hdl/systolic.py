"""The weight-stationary column-combining systolic array (Kung, McDanel, Zhang, ASPLOS 2019).

Dataflow
--------
Rows are output channels, columns are column groups. Cell (r, c) holds a weight and a select index
per bank and adds its product into the partial sum running left to right along row r, one register
per cell. A vector enters at column 0 and reaches column c after c clocks, so the activations of
group c are delayed by c clocks (the input skew, hdl/delay.py: memories where the delay is long),
and each vector carries a token (valid, weight bank, flags, accumulator address) down a pipeline
beside it. Activations are broadcast down each column rather than pipelined from row to row, so
every row's result leaves the array in the same clock and no output de-skew buffer is needed.

Timing closure by construction (DESIGN.md §9)
---------------------------------------------
The array never stalls: every pipeline register loads every clock, without an enable, and none of
the datapath registers is reset (only valid bits, counters and the bank state are). Back-pressure
is handled at the edges, from registers:
  * an activation vector is accepted only when the result buffer (a FIFO of `result_buffer`
    entries) is sure to have room for it: `credits` counts its free entries less the results
    still in flight, so a result never has to wait inside the array;
  * a weight beat is accepted when its bank is empty and no vector in flight still reads it;
    the beat is registered and then written systolically, like the activations: column c's
    weight enters a shift register up the column, one stage per cell, and the rows' strobes reach
    cell (r, c) c clocks after cell (r, 0), each cell's strobes from registers of its own (no
    stream handshake, and no wide load enable, reaches more than one cell). Each beat shifts the
    stages one row up; the tile's last beat writes every row's bank from the stage below it (or,
    with weight_stage "bank", the bank being loaded is each cell's stage, hdl/cell.py). A
    cell's banks thus load from its neighbour, not from a bus along the column. Column c's first
    vector of a tile reads its weight c clocks late too, so the weights are always in place in
    time;
  * the result stream's ready only reads the FIFO.
Each cell has `cell_stages` register stages (operand select, one or two product stages, accumulate;
hdl/cell.py), and the accumulator memory's read-modify-write is pipelined with forwarding.

Tiles and accumulation
----------------------
A layer larger than the array is cut into tiles of R rows x C groups. The partial sums of the tiles
of one output block are accumulated after the array, in an accumulator memory of `max_batch`
vectors of R sums, rather than by feeding them back through a partial-sum input: the host then
streams each activation tile once and receives only finished outputs. Each activation beat says
whether it starts (`clear`) or finishes (`emit`) an accumulation; only finishing beats produce a
result beat.

Weights are double-buffered: two banks per cell. The next tile's weights load into the idle bank
while the current tile computes. A bank is filled by R beats, row 0 first, through the column's
shift register. Each column's cells
learn the bank of the vector they take next a clock ahead (`next_bank`, token stage c - 1's), so
that they register their bank's select before the vector arrives (hdl/cell.py banked_weight).

Row heads: an integer cell in LUTs leaves its Booth rows' +1s out of its product (they depend on
its weight alone, hdl/booth.py); each row's partial sum starts from their sum over the row's
weights in the vector's bank instead of zero (`_row_heads`).

Term quantization and other MAC styles (hdl/macs.py): the style's edge logic turns each activation
into the operand the cells see once, at the array's edge (a TQ array truncates it to its first
`data_terms` HESE terms), and the cell's product is the style's.

Latency (spec.ArrayConfig.latency): the input register, C - 1 clocks of skew, the cell's stages,
the accumulator's add, and the result FIFO.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .cell import shift_words, weight_stage_for
from .delay import DelayLine
from .macs import MAC_HARDWARE, value_shape
from .memories import BufferedFIFO
from .replicas import replica
from .row import STAGED, SystolicRow, build_row, column_widths, instantiate


# How a column's activations and bank reach its rows' cells: as copies of one register
# (hdl/replicas.py), one per group of ROWS_PER_GROUP rows, each driving its group's cells, so that
# no register drives a whole column.
ROWS_PER_GROUP = 4


class ArrayLayouts:
    """Payload layouts of the array's streams, derived from a configuration."""

    def __init__(self, config):
        mac = MAC_HARDWARE[config.mac]
        self.act = value_shape(config.act_width, config.act_signed)
        self.weight = mac.weight_shape(config)
        self.operand = mac.operand_shape(config)
        self.select = unsigned(config.select_width)
        # The weight term a term-serial cell uses this clock (no port with a single term).
        self.term = Shape.cast(range(config.weight_terms)) if mac.serial and config.weight_terms > 1 else None
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
        # What travels beside a vector (its valid bit travels separately: it is reset).
        token = {
            "bank": 1,
            "clear": 1,
            "emit": 1,
            "addr": range(max(config.max_batch, 2)),
        }
        if mac.serial:
            # The term pair this clock of the vector works on: the weight term its cells use and
            # the data term the edge presents.
            # (At least one bit each: a zero-width field is no legal Verilog.)
            token["term"] = range(max(config.weight_terms, 2))
            token["data_term"] = range(max(config.data_terms, 2))
        self.token = data.StructLayout(token)


class SystolicArray(wiring.Component):
    """An R x C column-combining systolic array with streaming weights, activations and results.

    `config` is a spec.array.ArrayConfig: every width, the MAC style, the pipeline depth and the
    result buffer come from it.

    Members
    -------
    weights     : In(stream.Signature(layouts.weight_row))  R beats per tile, row 0 first.
    activations : In(stream.Signature(layouts.activations)) one vector per beat.
    results     : Out(stream.Signature(layouts.results))    one beat per `emit` vector.
    """

    def __init__(self, config, *, shared_prefix=None, dsp_cells=0, weight_stage=None):
        """`shared_prefix`: a module name prefix. The cells then become instances of one cell module,
        `<prefix>_cell`, and the rows instances of one row module, `<prefix>_row` (hdl/row.py),
        which `shared_modules` holds for the generator to emit once (hierarchical Verilog: one cell
        and one row module instead of R x C copies in the top); None keeps the cells Amaranth
        submodules of the array, which Amaranth's simulator needs.

        `dsp_cells`: the first this many cells (row by row) compute their product as one
        multiplier for a DSP block, the others as LUT-friendly halves (hdl/cell.py); an FPGA build
        chooses it from the device's DSP blocks. It changes no result and no timing. Its rows
        differ, so it keeps the cells in the array's module (no shared modules).

        `weight_stage`: how the cells' weights shift up their columns (hdl/cell.py WEIGHT_STAGES);
        None chooses for the platform the array is elaborated for (weight_stage_for), and
        "register" for shared modules, which are made before there is a platform."""
        if dsp_cells and shared_prefix is not None:
            raise ValueError("DSP cells differ from the others: they cannot share one cell and row module")
        if not 0 <= dsp_cells <= config.rows * config.cols:
            raise ValueError(f"dsp_cells must be between 0 and {config.rows * config.cols}, not {dsp_cells}")
        self.dsp_cells = dsp_cells
        if weight_stage is not None:
            shift_words(weight_stage, config.banks)       # refuses an unknown stage now
        if weight_stage is None and shared_prefix is not None:
            weight_stage = "register"
        self.weight_stage = weight_stage
        self.config = config
        self.layouts = ArrayLayouts(config)
        # Whether each kind of cell (DSP or not) leaves its product's +1s to its row's head.
        weight = Signal(self.layouts.weight, name="weight_probe")
        self._defers = {dsp: bool(MAC_HARDWARE[config.mac].negations(config, weight, dsp=dsp)) for dsp in (False, True)}
        self.shared_modules = {}
        self.shared_row = None
        if shared_prefix is not None:
            self.shared_row = f"{shared_prefix}_row"
            cell_module = f"{shared_prefix}_cell"
            self.shared_modules[cell_module] = self._make_cell(weight_stage=weight_stage)
            widths = column_widths(self.layouts, config.alpha, shift_words(weight_stage, config.banks))
            self.shared_modules[self.shared_row] = SystolicRow(
                cols=config.cols, widths=widths, chain_width=self.chain_width,
                cell_module=cell_module, head=self._defers[False])
        super().__init__({
            "weights": In(stream.Signature(self.layouts.weight_row)),
            "activations": In(stream.Signature(self.layouts.activations)),
            "results": Out(stream.Signature(self.layouts.results)),
        })

    @property
    def chain_width(self):
        """Width of the partial sums along a row: enough for any sum of `cols` products (one tile
        row), no more. A row's sum is exact at this width, so the accumulator after the array,
        `acc_width` wide, sign-extends it and wraps exactly as a full-width chain would; the
        narrower chain saves each cell's adder and register bits."""
        return min(self.config.acc_width, self.config.min_acc_width)

    @property
    def latency(self):
        """Clocks from an activation handshake to its result being valid, without stalls."""
        return self.config.latency

    def _make_cell(self, dsp=False, weight_stage="register"):
        return MAC_HARDWARE[self.config.mac].cell(self.config, acc_width=self.chain_width, dsp=dsp,
                                                  defer_negation=True, weight_stage=weight_stage)

    def _row_heads(self, m, row_load, row_bank, tokens):
        """The partial sum each row's column 0 starts from (None: zero). Cells that leave their
        Booth rows' +1s out of their product (hdl/booth.py: sum_j neg_j 4**j, bits of the weight)
        are made whole here: a row's head is that sum over its cells' weights in the bank its
        vector uses. It is taken from each row's weight beat as the array takes it (once for the
        array, as the beats come one at a time) and kept per row and bank until the tile's last
        beat writes the cells' banks."""
        cfg = self.config
        rows, cols, banks = cfg.rows, cfg.cols, cfg.banks
        mac = MAC_HARDWARE[cfg.mac]
        masks = [tuple(c for c in range(cols) if self._defers[r * cols + c < self.dsp_cells]) for r in range(rows)]
        if not any(masks):
            return [None] * rows
        negations = [mac.negations(cfg, weight) for weight in self.weights.payload.weights]
        shifts = [shift for _, shift in negations[0]]
        total_shape = range(cols * sum(1 << shift for shift in shifts) + 1)

        # Clock T takes row r's beat; T + 1: its negation bits are registered (row_load[r] is high);
        # T + 2: their count per digit; T + 3: the sum of the counts << shift; T + 4: the sum is in
        # row r's register for its bank. The tile's first vector can enter column 0 at T + 2 and
        # adds its head at T + 4 at the earliest (token stage cell_stages - 1).
        bits = Signal(cols * len(shifts), name="beat_negations", reset_less=True)
        m.d.sync += bits.eq(Cat(bit for column in negations for bit, _ in column))
        totals = {}
        for mask in sorted(set(masks) - {()}):
            k = len(totals)
            counts = [Signal(range(cols + 1), name=f"beat_negations_{k}_d{j}", reset_less=True)
                      for j in range(len(shifts))]
            for j, count in enumerate(counts):
                m.d.sync += count.eq(sum(bits[c * len(shifts) + j] for c in mask))
            totals[mask] = Signal(total_shape, name=f"beat_negations_{k}", reset_less=True)
            m.d.sync += totals[mask].eq(sum(count << shift for count, shift in zip(counts, shifts)))
        late_load = [Signal(rows, name=f"late_load_{n}") for n in range(2)]
        m.d.sync += [late_load[0].eq(Cat(row_load)), late_load[1].eq(late_load[0])]

        assert cfg.cell_stages >= 2
        head_banks = []                 # the bank token stage cell_stages - 1 uses, per group of rows
        for k in range(-(-rows // ROWS_PER_GROUP)):
            head_banks.append(replica(1, f"head_bank_g{k}"))
            m.d.sync += head_banks[k].eq(tokens[cfg.cell_stages - 2].bank)
        heads = []
        for r in range(rows):
            if not masks[r]:
                heads.append(None)
                continue
            late_bank = [replica(1, f"late_bank_r{r}_{n}") for n in range(2)]
            m.d.sync += [late_bank[0].eq(row_bank[r]), late_bank[1].eq(late_bank[0])]
            sums = [Signal(total_shape, name=f"negations_r{r}_b{b}", reset_less=True) for b in range(banks)]
            for b in range(banks):
                with m.If(late_load[1][r] & (late_bank[1] == b if banks > 1 else 1)):
                    m.d.sync += sums[b].eq(totals[masks[r]])
            psum = Signal(signed(self.chain_width), name=f"head_psum_r{r}")
            # One bank loads only while no vector reads it.
            m.d.comb += psum.eq(sums[0] if banks == 1 else Mux(head_banks[r // ROWS_PER_GROUP], sums[1], sums[0]))
            heads.append(psum)
        return heads

    def _add_flat_cell(self, m, name, index, inputs, weight_stage):
        """Cell `name`, the array's cell number `index` (row by row), as a submodule of the array
        with its inputs connected; returns its outputs (hdl/row.py build_row)."""
        cell = self._make_cell(dsp=index < self.dsp_cells, weight_stage=weight_stage)
        m.submodules[name] = cell
        m.d.comb += [getattr(cell, port).eq(value) for port, value in inputs.items()]
        return {"psum_out": cell.psum_out,
                **{name: getattr(cell, name) for name in STAGED if name in cell.signature.members}}

    def elaborate(self, platform):
        m = Module()
        cfg, lay = self.config, self.layouts
        rows, cols, alpha, banks = cfg.rows, cfg.cols, cfg.alpha, cfg.banks
        mac = MAC_HARDWARE[cfg.mac]
        addr_shape = range(max(cfg.max_batch, 2))

        # ---------------------------------------------------------------------------------
        # Tokens: stage k holds the token of the vector that entered k + 1 clocks ago. Stage c
        # is aligned with column c's cell inputs; stage at_add (below) with the row sums, the
        # next with the accumulated sums, the one after with the sums written before them.
        at_add = cols - 1 + cfg.cell_stages
        depth = at_add + 3
        valid = [Signal(name=f"valid_{k}") for k in range(depth)]
        tokens = [Signal(lay.token, name=f"token_{k}", reset_less=True) for k in range(depth)]
        for k in range(1, depth):
            m.d.sync += [valid[k].eq(valid[k - 1]), tokens[k].eq(tokens[k - 1])]

        # ---------------------------------------------------------------------------------
        # Bank state: which bank loads and which computes, which banks are full, and how many
        # vectors in flight still read each bank (they read it at their column's select stage).
        # Both streams' ready bits are registers, computed a clock ahead from the next state, so
        # that a handshake starts at registers: on the ULX3S 16x16 array the bank state's logic
        # in series with the 16 rows' load strobes, across the device, was the critical path.
        full, full_next = Signal(banks), Signal(banks)
        users = [Signal(range(cols + 2), name=f"users_b{b}") for b in range(banks)]
        users_next = [Signal(range(cols + 2), name=f"users_next_b{b}") for b in range(banks)]
        if banks == 2:
            load_bank, load_bank_next = Signal(name="load_bank"), Signal(name="load_bank_next")
            compute_bank, compute_bank_next = Signal(name="compute_bank"), Signal(name="compute_bank_next")
            m.d.sync += [load_bank.eq(load_bank_next), compute_bank.eq(compute_bank_next)]
        else:
            load_bank = load_bank_next = compute_bank = compute_bank_next = Const(0, 1)
        m.d.sync += full.eq(full_next)
        for b in range(banks):
            m.d.sync += users[b].eq(users_next[b])

        # Weight beats: loaded into their row (systolically, below), one registered load strobe per
        # row to start; the row a beat goes to is one-hot.
        # The load bank is empty and no vector reads it: the stream's ready, and a copy for the
        # rows' strobes and the load row; a copy of the load row's last bit for the bank commit.
        # The ready bit then reaches only the link's hop and its own next state, not every row
        # (the ULX3S dense 22x22 and 23x23's critical path was weights_ready -> the weight hop,
        # 9.3 ns, 92% routing; the α = 4 20x20's weights_ready -> weights_ready, 9.94 ns, 79%).
        # Both are replicas: Yosys would merge a plain register into its kept copy.
        weights_ready = replica(1, "weights_ready", init=1)
        rows_ready = replica(1, "weights_ready_rows", init=1)
        weight_taken, row_taken = Signal(), Signal()
        m.d.comb += [self.weights.ready.eq(weights_ready),
                     weight_taken.eq(self.weights.valid & self.weights.ready),
                     row_taken.eq(self.weights.valid & rows_ready)]
        load_row = Signal(rows, init=1)
        if rows == 1:
            loading_last = Const(1, 1)
        else:
            loading_last = replica(1, "loading_last_row", init=0)     # load_row[rows - 1]
            with m.If(weight_taken):
                m.d.sync += loading_last.eq(load_row[rows - 2])
        row_load = Signal(rows)                 # the row each beat is for, registered (row heads)
        # The strobes of the rows' weight shift registers (hdl/cell.py banked_weight): every beat
        # shifts, the tile's last writes the stages into bank `load_bank`. A copy per row of each:
        # identical registers that synthesis would otherwise merge into one driving every row
        # (hdl/replicas.py).
        row_shift = [replica(1, f"row_shift_{r}") for r in range(rows)]
        row_commit = [replica(1, f"row_commit_{r}") for r in range(rows)]
        row_bank = [replica(1, f"row_bank_{r}") for r in range(rows)]
        for r in range(rows):
            m.d.sync += [row_load[r].eq(row_taken & load_row[r]), row_shift[r].eq(row_taken),
                         row_commit[r].eq(row_taken & load_row[rows - 1]), row_bank[r].eq(load_bank)]
        with m.If(row_taken):
            m.d.sync += load_row.eq(load_row.rotate_left(1))

        # ---------------------------------------------------------------------------------
        # Results: a FIFO that is never asked to take a result it has no room for.
        m.submodules.result_fifo = result_fifo = BufferedFIFO(width=lay.results.size, depth=cfg.result_buffer,
                                                                 lanes=rows)
        # Accepted emitting vectors whose result has not left the FIFO (in flight or in it).
        reserved, reserved_next = Signal(range(cfg.result_buffer + 1)), Signal(range(cfg.result_buffer + 1))
        m.d.sync += reserved.eq(reserved_next)

        # Issue: one vector per clock while the compute bank is full and a result would fit.
        activations_ready = Signal()
        batch_addr = Signal(addr_shape)
        accept = Signal()
        act = self.activations.payload
        m.d.comb += [
            self.activations.ready.eq(activations_ready),
            accept.eq(self.activations.valid & self.activations.ready),
        ]
        # issue: token stage 0 takes a vector's (first) clock; issue_bank: the bank it computes with.
        issue, issue_bank = Signal(), Signal()
        continuing = Signal()   # a term-serial vector has pairs left after token stage 0's
        if not mac.serial:
            m.d.comb += [issue.eq(accept), issue_bank.eq(compute_bank)]
            m.d.sync += [
                valid[0].eq(accept),
                tokens[0].bank.eq(compute_bank),
                tokens[0].clear.eq(act.clear),
                tokens[0].emit.eq(act.emit),
                tokens[0].addr.eq(batch_addr),
            ]
        else:
            # Term-serial: a vector takes one clock per term pair (weight term outer, data term
            # inner): accepted with pair (0, 0), then token stage 0 steps through the pairs; only
            # the first pair clears the accumulator and only the last emits.
            W, D = cfg.weight_terms, cfg.data_terms
            stage0 = tokens[0]
            last_data = stage0.data_term == D - 1
            is_last = last_data & (stage0.term == W - 1)
            next_term, next_data_term = Signal(range(max(W, 2))), Signal(range(max(D, 2)))
            next_is_last = Signal()
            emit_held = Signal(reset_less=True)       # the vector's emit flag, for its last pair
            m.d.comb += continuing.eq(valid[0] & ~is_last)
            m.d.comb += [issue.eq(accept | continuing), issue_bank.eq(Mux(accept, compute_bank, stage0.bank))]
            with m.If(accept):
                m.d.comb += [next_term.eq(0), next_data_term.eq(0)]
            with m.Else():
                m.d.comb += [next_term.eq(stage0.term + last_data), next_data_term.eq(Mux(last_data, 0, stage0.data_term + 1))]
            m.d.comb += next_is_last.eq((next_term == W - 1) & (next_data_term == D - 1))
            m.d.sync += [valid[0].eq(issue), stage0.term.eq(next_term), stage0.data_term.eq(next_data_term)]
            with m.If(accept):
                m.d.sync += [stage0.bank.eq(compute_bank), stage0.clear.eq(act.clear),
                             stage0.emit.eq(act.emit & next_is_last),     # 1 x 1 terms: the only pair
                             stage0.addr.eq(batch_addr), emit_held.eq(act.emit)]
            with m.Else():
                m.d.sync += [stage0.clear.eq(0), stage0.emit.eq(emit_held & next_is_last)]
        with m.If(accept):
            with m.If(act.last | (batch_addr == cfg.max_batch - 1)):
                m.d.sync += batch_addr.eq(0)
            with m.Else():
                m.d.sync += batch_addr.eq(batch_addr + 1)

        # The next bank state: a bank is full once its last row is loaded and empty once the last
        # vector of its tile is accepted (never the same bank in one clock: loading needs it empty,
        # computing full).
        m.d.comb += full_next.eq(full)
        if banks == 2:
            m.d.comb += [load_bank_next.eq(load_bank), compute_bank_next.eq(compute_bank)]
        with m.If(weight_taken & loading_last):
            m.d.comb += full_next.bit_select(load_bank, 1).eq(1)
            if banks == 2:
                m.d.comb += load_bank_next.eq(~load_bank)
        with m.If(accept & act.last):
            m.d.comb += full_next.bit_select(compute_bank, 1).eq(0)
            if banks == 2:
                m.d.comb += compute_bank_next.eq(~compute_bank)
        # issue_bank one clock later (the bank token stage 0 takes in the clock after next), where
        # it takes a vector: a term-serial vector's next pair keeps its bank, a new vector
        # computes with the compute bank of then. (Only valid vectors' banks matter.)
        issue_bank_ahead = Signal()
        if mac.serial:
            m.d.comb += issue_bank_ahead.eq(Mux(issue & ~next_is_last, issue_bank, compute_bank_next))
        else:
            m.d.comb += issue_bank_ahead.eq(compute_bank_next)
        # A vector stops reading its bank after column cols - 1's select stage (token stage cols - 1).
        idle_next = Signal(banks)
        for b in range(banks):
            issued = issue & (issue_bank == b)
            done = valid[cols - 1] & (tokens[cols - 1].bank == b)
            m.d.comb += [users_next[b].eq(users[b] + issued - done), idle_next[b].eq(users_next[b] == 0)]
        # Credits: an emitting vector holds one from its acceptance until its result leaves the FIFO.
        m.d.comb += reserved_next.eq(reserved + (accept & act.emit) - (self.results.valid & self.results.ready))
        weights_ready_next = Signal()
        m.d.comb += weights_ready_next.eq(~full_next.bit_select(load_bank_next, 1)
                                          & idle_next.bit_select(load_bank_next, 1))
        m.d.sync += [
            weights_ready.eq(weights_ready_next),
            rows_ready.eq(weights_ready_next),
            activations_ready.eq(full_next.bit_select(compute_bank_next, 1) & (reserved_next < cfg.result_buffer)
                                 & ~(issue & ~next_is_last if mac.serial else 0)),
        ]
        stored = Signal()

        # ---------------------------------------------------------------------------------
        # What the rows read, column by column, arrives in copies of one register (ROWS_PER_GROUP
        # above): each row input is a plain bit vector, the columns side by side (column 0 low), as
        # the row takes them (hdl/row.py).
        row_inputs = [{} for _ in range(-(-rows // ROWS_PER_GROUP))]    # one per group of rows

        def to_rows(name, columns):
            """Register `columns` (what each column's cells take a clock later, side by side) once
            per group of rows as row input `name`."""
            value = Cat(columns)
            for k, inputs in enumerate(row_inputs):
                inputs[name] = replica(len(value), f"{name}_g{k}")
                m.d.sync += inputs[name].eq(value)

        # The edge: each activation becomes the MAC style's operand (once, not once per cell);
        # group g is then delayed g clocks, g + 1 with the register to the rows.
        if not mac.serial:
            operands = [mac.edge_operand(m, cfg, act.data[k], f"edge_{k}") for k in range(cols * alpha)]
        else:
            # Each activation is held for the vector's pairs; each clock the data term of the pair
            # token stage 0 takes next is encoded from it (only that term: hese.encode_term) and
            # goes down the skew line.
            operands = []
            for k in range(cols * alpha):
                held = Signal.like(act.data[k], name=f"edge_{k}_held", reset_less=True)
                with m.If(accept):
                    m.d.sync += held.eq(act.data[k])
                source = Signal.like(act.data[k], name=f"edge_{k}_source")
                m.d.comb += source.eq(Mux(accept, act.data[k], held))
                operands.append(mac.edge_term(m, cfg, source, next_data_term, f"edge_{k}").as_value())

        def skew(name, values, column):
            """`values` delayed `column` clocks, for column `column` (hdl/delay.py: a memory where
            that is long)."""
            value = Cat(values)
            m.submodules[f"{name}_{column}"] = line = DelayLine(len(value), column)
            m.d.comb += line.i.eq(value)
            return line.o

        to_rows("activations", [skew("skew", operands[g * alpha:(g + 1) * alpha], g) for g in range(cols)])

        # Weight loading, skewed like the activations: column c's weight and select are delayed
        # c + 1 clocks and enter the column's shift register at its last row; each row's strobes
        # pass from cell to cell through a register each (hdl/row.py), so that column c's cells
        # shift and write c clocks after column 0's. The shift register runs up the column: a beat
        # moves one row up per beat, and the tile's last beat, for row R - 1, finds row r's beat
        # in row r + 1's stage and writes every row's bank at once. With weight_stage "bank" the
        # load bank of each cell is the stage: after the tile's last beat row r's holds beat r.
        beats = []
        for c in range(cols):
            beat = {"weight": self.weights.payload.weights[c]}
            if alpha > 1:
                beat["select"] = self.weights.payload.selects[c]
            layout = data.StructLayout({name: len(Value.cast(value)) for name, value in beat.items()})
            beats.append(data.View(layout, skew("weight_skew", list(beat.values()), c)))
        # With weight_stage "bank" the last row's cells shift each bank from a word of its own
        # here, the same beat (synthesis keeps one).
        weight_stage = self.weight_stage or weight_stage_for(platform)
        words = shift_words(weight_stage, banks)
        entry = {"load_weight": Cat(Cat([beat.weight] * words) for beat in beats)}
        if alpha > 1:
            entry["load_select"] = Cat(Cat([beat.select] * words) for beat in beats)
        for name, value in entry.items():
            registered = Signal(len(value), name=f"{name}_entry", reset_less=True)
            m.d.sync += registered.eq(value)
            entry[name] = registered

        # The bank each column's cells compute with in the next clock (next_bank, hdl/cell.py): the
        # bank of token stage c - 1, which they take next, so stage c - 2's through the register
        # (column 1: the token stage 0 takes next; column 0: the one it takes in the clock after).
        to_rows("next_bank", [issue_bank_ahead if c == 0 else issue_bank if c == 1 else tokens[c - 2].bank
                              for c in range(cols)])
        # Term-serial: the weight term each column's cells use, token stage c's.
        if lay.term is not None:
            to_rows("term", [next_term if c == 0 else tokens[c - 1].term for c in range(cols)])

        # ---------------------------------------------------------------------------------
        # The rows (hdl/row.py), each reading its copies of the column inputs: one shared row module
        # instantiated R times, or the cells in this module.
        # Built from the last row up: each row's weight stages are the inputs of the row above.
        row_sums = [None] * rows
        heads = self._row_heads(m, row_load, row_bank, tokens)
        below = entry
        for r in reversed(range(rows)):
            inputs = {**row_inputs[r // ROWS_PER_GROUP], **below,
                      "load": row_commit[r], "load_bank": row_bank[r], "shift": row_shift[r]}
            if heads[r] is not None:
                inputs["psum_in"] = heads[r]
            if self.shared_row is None:
                outputs = build_row(
                    m, inputs, cols=cols, chain_width=self.chain_width,
                    add_cell=lambda m, name, c, ports, r=r: self._add_flat_cell(m, name, r * cols + c, ports,
                                                                                weight_stage),
                    suffix=lambda c, r=r: f"_r{r}_c{c}")
            else:
                outputs = {"psum_out": Signal(signed(self.chain_width), name=f"row_{r}_psum")}
                for staged, source in STAGED.items():
                    if source in entry:
                        outputs[staged] = Signal(len(entry[source]), name=f"row_{r}_{staged}")
                m.submodules[f"row_{r}"] = instantiate(self.shared_row, outputs, inputs)
            row_sums[r] = outputs["psum_out"]
            below = {source: outputs[staged] for staged, source in STAGED.items() if source in entry}

        # ---------------------------------------------------------------------------------
        # Accumulator: read the vector's entry two clocks ahead (token stage cols), register the
        # memory's output (block RAM is slow from clock to output: the second register is its
        # own output register), add at stage cols + 2, register the sums (stage cols + 3) and
        # write them back. The two entries written since the read was issued are forwarded from
        # the sums registers; older writes reach the read through the port's transparency.
        at_read, at_write = at_add - 2, at_add + 1
        acc_mem = memory.Memory(shape=lay.results, depth=max(cfg.max_batch, 2), init=[])
        m.submodules.acc_mem = acc_mem
        acc_write = acc_mem.write_port()
        acc_read = acc_mem.read_port(transparent_for=(acc_write,))
        read_data = Signal(lay.results, reset_less=True)
        sums = Signal(lay.results, reset_less=True)           # the sums of token stage at_write
        sums_before = Signal(lay.results, reset_less=True)    # ... of stage at_write + 1
        m.d.sync += [read_data.eq(acc_read.data), sums_before.eq(sums)]
        m.d.comb += [acc_read.addr.eq(tokens[at_read].addr), acc_read.en.eq(1)]

        # Which sums to forward, and whether to clear, is decided a clock ahead, from the same
        # tokens one stage earlier (the pipeline never stalls), so the add's path starts at a
        # register; one copy per row, as each drives acc_width multiplexers.
        forward_sums = Signal()          # stage at_write writes the entry stage at_add reads
        forward_sums_before = Signal()   # stage at_write + 1 wrote it
        m.d.comb += [
            forward_sums.eq(valid[at_add] & (tokens[at_add].addr == tokens[at_add - 1].addr)),
            forward_sums_before.eq(valid[at_write] & (tokens[at_write].addr == tokens[at_add - 1].addr)),
        ]
        for r in range(rows):
            use_sums = replica(1, f"forward_sums_r{r}")
            use_sums_before = replica(1, f"forward_sums_before_r{r}")
            clear = replica(1, f"clear_r{r}")
            m.d.sync += [use_sums.eq(forward_sums), use_sums_before.eq(forward_sums_before),
                         clear.eq(tokens[at_add - 1].clear)]
            previous = Mux(use_sums, sums[r], Mux(use_sums_before, sums_before[r], read_data[r]))
            m.d.sync += sums[r].eq(row_sums[r] + Mux(clear, 0, previous))
        m.d.comb += [
            acc_write.addr.eq(tokens[at_write].addr),
            acc_write.data.eq(sums),
            acc_write.en.eq(valid[at_write]),
            stored.eq(valid[at_write] & tokens[at_write].emit),
            result_fifo.w_data.eq(sums),
            result_fifo.w_en.eq(stored),
            self.results.valid.eq(result_fifo.r_rdy),
            self.results.payload.eq(result_fifo.r_data),
            result_fifo.r_en.eq(self.results.ready),
        ]
        return m
