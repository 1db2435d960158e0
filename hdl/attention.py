"""A one-head attention unit with integer softmax and attention-aware pruning (after E.T., SC 2021).

Dataflow
--------
K and V (n <= max_len rows of d elements) are loaded through the `kv` stream into two memories,
one row of each per beat. Query rows then stream in, each with its fixed-point softmax scale
(multiplier and shift), and each produces one output row. A query runs through four passes, one
after the other, on one small datapath each:

  scores   one q . K_j per clock on a d-wide multiply-add tree (pipelined: read K_j, multiply-add,
           then track the row max, insert into the top-k registers, store s_j). Positions that
           are already certain to be pruned are filtered out here: one that lies more than the
           threshold below the *running* max, or that does not enter the running top k, can only
           fall further behind. The others are appended to a candidate list;
  softmax  one *candidate* per clock: z_j = ((max - s_j) * scale) >> shift, e_j = 2**(-z_j)
           from a table for the fraction and a shift for the integer part, the pruning decision
           (z_j against the threshold, (s_j, j) against the final top-k cutoff), the sum of the
           kept e_j, and the kept positions appended to a list;
  divide   the reciprocal 2**N // sum, DIVIDER_BITS_PER_CLOCK quotient bits per clock;
  p . V    one *kept* position per clock: p_j = round(e_j * reciprocal), then the d accumulators
           add p_j * V_j. Pruned positions are never visited.

Pruning therefore saves clocks twice: in the softmax pass (positions filtered while scoring) and in
p . V (positions pruned by the softmax pass). The filter never changes the result: a position
it drops would have been pruned anyway.

The output row is the accumulators rounded and saturated to out_width, with the count of kept
positions. The exact arithmetic is specified in software/golden/attention.py; `config` is a
spec.attention.AttentionConfig, which derives every width and the clocks of each pass.

Stalls: the input streams are ready only in the state that takes them, and the unit holds its
output until it is taken, so no beat is lost or duplicated under any valid/ready pattern.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from spec.attention import DIVIDER_BITS_PER_CLOCK, SHIFT_WIDTH

from .softmax import Exp2, SerialReciprocal
from .topk import TopK


def adder_tree(m, terms, name):
    """Sum of `terms` as a balanced tree of combinational adders (depth log2 of their count)."""
    level = 0
    while len(terms) > 1:
        paired = []
        for i in range(0, len(terms) - 1, 2):
            a, b = terms[i], terms[i + 1]
            s = Signal(signed(max(a.shape().width, b.shape().width) + 1), name=f"{name}_l{level}_{i // 2}")
            m.d.comb += s.eq(a + b)
            paired.append(s)
        if len(terms) % 2:
            paired.append(terms[-1])
        terms, level = paired, level + 1
    return terms[0]


class AttentionLayouts:
    """Payload layouts of the unit's streams."""

    def __init__(self, config):
        d = config.head_dim
        data_shape = signed(config.data_width)
        self.row = data.ArrayLayout(data_shape, d)
        self.kv = data.StructLayout({
            "key": self.row,
            "value": self.row,
            "last": 1,          # the sequence's last row
        })
        self.query = data.StructLayout({
            "q": self.row,
            "scale": unsigned(config.scale_width),
            "shift": unsigned(SHIFT_WIDTH),
            "last": 1,          # the last query against this K and V
        })
        self.out = data.StructLayout({
            "out": data.ArrayLayout(signed(config.out_width), d),
            "kept": unsigned(config.max_len.bit_length()),
        })


class AttentionUnit(wiring.Component):
    """One attention head: K, V in on-chip memory, query rows in, output rows out.

    Members
    -------
    kv    : In(stream.Signature(layouts.kv))     n beats, `last` on the n-th (n <= max_len).
    query : In(stream.Signature(layouts.query))  one beat per query; `last` ends the sequence.
    out   : Out(stream.Signature(layouts.out))   one beat per query.
    """

    def __init__(self, config):
        self.config = config
        self.layouts = AttentionLayouts(config)
        super().__init__({
            "kv": In(stream.Signature(self.layouts.kv)),
            "query": In(stream.Signature(self.layouts.query)),
            "out": Out(stream.Signature(self.layouts.out)),
        })

    @property
    def latency(self):
        """Clocks from a query handshake to its output being valid, for a full-length sequence
        with nothing pruned (the longest): the spec's `query_cycles` of the passes below."""
        return self.config.latency

    def elaborate(self, platform):
        m = Module()
        cfg, lay = self.config, self.layouts
        d, L = cfg.head_dim, cfg.max_len
        F, P = cfg.exp_frac_bits, cfg.prob_bits
        index_shape = unsigned(cfg.index_width)
        depth = max(L, 2)

        # Memories: K and V rows; this query's scores and exponentials, its candidate and kept lists.
        m.submodules.k_mem = k_mem = memory.Memory(shape=lay.row, depth=depth, init=[])
        m.submodules.v_mem = v_mem = memory.Memory(shape=lay.row, depth=depth, init=[])
        m.submodules.score_mem = score_mem = memory.Memory(shape=signed(cfg.score_width), depth=depth, init=[])
        m.submodules.exp_mem = exp_mem = memory.Memory(shape=unsigned(cfg.exp_width), depth=depth, init=[])
        m.submodules.cand_mem = cand_mem = memory.Memory(shape=index_shape, depth=depth, init=[])
        m.submodules.kept_mem = kept_mem = memory.Memory(shape=index_shape, depth=depth, init=[])
        k_write, k_read = k_mem.write_port(), k_mem.read_port()
        v_write, v_read = v_mem.write_port(), v_mem.read_port()
        score_write, score_read = score_mem.write_port(), score_mem.read_port()
        exp_write, exp_read = exp_mem.write_port(), exp_mem.read_port()
        cand_write, cand_read = cand_mem.write_port(), cand_mem.read_port()
        kept_write, kept_read = kept_mem.write_port(), kept_mem.read_port()

        # Sequence and query registers.
        last_row = Signal(index_shape)            # n - 1
        load_row = Signal(index_shape)
        q = Signal(lay.row)
        scale = Signal(cfg.scale_width)
        shift = Signal(SHIFT_WIDTH)
        last_query = Signal()
        step = Signal(range(max(L, cfg.recip_width) + 4))   # clock within the current pass
        row_max = Signal(signed(cfg.score_width))
        candidates = Signal(cfg.kept_width)             # positions appended to the candidate list
        kept = Signal(cfg.kept_width)                   # positions appended to the kept list
        total = Signal(cfg.sum_width)                   # sum of the kept exponentials
        acc = Signal(data.ArrayLayout(signed(cfg.acc_width), d))

        # The pruning blocks exist only in the modes that use them.
        use_threshold = cfg.prune in ("threshold", "both")
        use_topk = cfg.prune in ("topk", "both")
        m.submodules.exp2 = exp2 = Exp2(z_width=cfg.product_width, frac_bits=F, exp_bits=cfg.exp_bits)
        m.submodules.recip = recip = SerialReciprocal(
            numerator_log2=cfg.recip_shift, divisor_width=cfg.sum_width, quotient_width=cfg.recip_width,
            bits_per_clock=DIVIDER_BITS_PER_CLOCK)
        m.d.comb += recip.divisor.eq(total)
        if use_topk:
            m.submodules.topk = topk = TopK(k=cfg.top_k, score_shape=signed(cfg.score_width),
                                            index_width=cfg.index_width)

        # Pass pipelines: a valid bit and a position travel with each stage's data.
        def stage(name, **fields):
            return Signal(data.StructLayout({"valid": 1, "last": 1, "index": index_shape, **fields}), name=name)
        score_stage = stage("score_stage")
        score_done = stage("score_done", score=signed(cfg.score_width))
        cand_diff = stage("cand_diff", topk=1, diff=unsigned(cfg.diff_width))
        cand_product = stage("cand_product", topk=1, product=unsigned(cfg.product_width))
        soft_list = stage("soft_list")
        soft_read = stage("soft_read")
        soft_product = stage("soft_product", topk=1, product=unsigned(cfg.product_width))
        soft_z = stage("soft_z", topk=1, z=unsigned(cfg.product_width))
        pv_list = stage("pv_list")
        pv_exp = stage("pv_exp")
        pv_prob = stage("pv_prob", prob=unsigned(cfg.prob_width))

        # Default: the first stage of every pass empties unless its pass feeds it.
        m.d.sync += [score_stage.valid.eq(0), soft_list.valid.eq(0), pv_list.valid.eq(0)]

        def follow(later, earlier):
            """Move the valid bit, last flag and position one stage on."""
            return [later.valid.eq(earlier.valid), later.last.eq(earlier.last), later.index.eq(earlier.index)]

        # One scaler (difference to the max -> z in log2 units) serves the scores pass's filter and
        # the softmax pass, which never overlap: multiply, then shift, each behind a register.
        scaler_diff = Signal(cfg.diff_width)
        scaler_product = Signal(cfg.product_width)
        scaler_z = Signal(cfg.product_width)
        m.d.comb += [
            scaler_product.eq(scaler_diff * scale),
            scaler_z.eq(Mux(cand_product.valid, cand_product.product, soft_product.product) >> shift),
        ]
        threshold = cfg.threshold << F if use_threshold else None

        # --- scores: K_j read at clock j, multiplied and summed at j + 1, recorded at j + 2, -------
        # --- scaled against the running max at j + 3, filtered at j + 4 -----------------------------
        m.d.comb += k_read.addr.eq(step)
        dot = adder_tree(m, [q[i] * k_read.data[i] for i in range(d)], "dot")
        m.d.sync += follow(score_done, score_stage) + [score_done.score.eq(dot)]
        m.d.comb += [
            score_write.addr.eq(score_done.index),
            score_write.data.eq(score_done.score),
            score_write.en.eq(score_done.valid),
        ]
        new_max = Signal()
        m.d.comb += new_max.eq((score_done.index == 0) | (score_done.score > row_max))
        with m.If(score_done.valid & new_max):
            m.d.sync += row_max.eq(score_done.score)
        m.d.sync += [
            *follow(cand_diff, score_done),
            # Distance below the running max (0 for a new max).
            cand_diff.diff.eq(Mux(new_max, 0, row_max - score_done.score)),
            *follow(cand_product, cand_diff),
            cand_product.topk.eq(cand_diff.topk),
            cand_product.product.eq(scaler_product),
        ]
        if use_topk:
            m.d.comb += [
                topk.insert.eq(score_done.valid),
                topk.score.eq(score_done.score),
                topk.index.eq(score_done.index),
            ]
            m.d.sync += cand_diff.topk.eq(topk.entering)
        else:
            m.d.sync += cand_diff.topk.eq(1)
        candidate = Signal()
        m.d.comb += candidate.eq(cand_product.topk & ((scaler_z <= threshold) if use_threshold else 1))
        m.d.comb += [
            cand_write.addr.eq(candidates),
            cand_write.data.eq(cand_product.index),
            cand_write.en.eq(cand_product.valid & candidate),
        ]
        with m.If(cand_product.valid & candidate):
            m.d.sync += candidates.eq(candidates + 1)

        # --- softmax: candidate i listed at i, its s_j read at i + 1, scaled at i + 2, shifted at ---
        # --- i + 3, exponentiated and pruned at i + 4 -------------------------------------------------
        m.d.comb += [
            cand_read.addr.eq(step),
            score_read.addr.eq(cand_read.data),
            scaler_diff.eq(Mux(cand_diff.valid, cand_diff.diff, row_max - score_read.data)),
        ]
        m.d.sync += [
            soft_read.valid.eq(soft_list.valid),
            soft_read.last.eq(soft_list.last),
            soft_read.index.eq(cand_read.data),
            *follow(soft_product, soft_read),
            soft_product.product.eq(scaler_product),
            *follow(soft_z, soft_product),
            soft_z.topk.eq(soft_product.topk),
            soft_z.z.eq(scaler_z),
        ]
        if use_topk:
            m.d.comb += [topk.test_score.eq(score_read.data), topk.test_index.eq(soft_read.index)]
            m.d.sync += soft_product.topk.eq(topk.kept)
        else:
            m.d.sync += soft_product.topk.eq(1)
        keep = Signal()
        m.d.comb += [
            exp2.z.eq(soft_z.z),
            keep.eq(soft_z.topk & ((soft_z.z <= threshold) if use_threshold else 1)),
            exp_write.addr.eq(soft_z.index),
            exp_write.data.eq(exp2.e),
            exp_write.en.eq(soft_z.valid),
            kept_write.addr.eq(kept),
            kept_write.data.eq(soft_z.index),
            kept_write.en.eq(soft_z.valid & keep),
        ]
        with m.If(soft_z.valid & keep):
            m.d.sync += [kept.eq(kept + 1), total.eq(total + exp2.e)]

        # --- p . V: kept list read at i, e_j read at i + 1, p_j at i + 2, accumulated at i + 3 ---
        m.d.comb += [
            kept_read.addr.eq(step),
            exp_read.addr.eq(kept_read.data),
            v_read.addr.eq(pv_exp.index),
        ]
        rounded = Signal(cfg.prob_width + cfg.recip_width + cfg.exp_bits + 1)
        m.d.comb += rounded.eq(exp_read.data * recip.quotient + (1 << (cfg.recip_shift - P - 1)))
        m.d.sync += [
            pv_exp.valid.eq(pv_list.valid),
            pv_exp.last.eq(pv_list.last),
            pv_exp.index.eq(kept_read.data),
            *follow(pv_prob, pv_exp),
            pv_prob.prob.eq(rounded[cfg.recip_shift - P:]),
        ]
        with m.If(pv_prob.valid):
            for i in range(d):
                m.d.sync += acc[i].eq(acc[i] + pv_prob.prob * v_read.data[i])

        # --- output: round half up, saturate -------------------------------------------------------
        o_lo, o_hi = -(1 << (cfg.out_width - 1)), (1 << (cfg.out_width - 1)) - 1
        for i in range(d):
            shifted = Signal(signed(cfg.acc_width + 1), name=f"out_rounded_{i}")
            m.d.comb += shifted.eq((acc[i] + (1 << (P - 1))) >> P)
            with m.If(shifted > o_hi):
                m.d.comb += self.out.payload.out[i].eq(o_hi)
            with m.Elif(shifted < o_lo):
                m.d.comb += self.out.payload.out[i].eq(o_lo)
            with m.Else():
                m.d.comb += self.out.payload.out[i].eq(shifted)
        m.d.comb += self.out.payload.kept.eq(kept)

        # --- control ------------------------------------------------------------------------------
        m.d.comb += [
            k_write.addr.eq(load_row), k_write.data.eq(self.kv.payload.key),
            v_write.addr.eq(load_row), v_write.data.eq(self.kv.payload.value),
        ]
        with m.FSM(name="phase"):
            with m.State("LOAD"):
                m.d.comb += [
                    self.kv.ready.eq(1),
                    k_write.en.eq(self.kv.valid),
                    v_write.en.eq(self.kv.valid),
                ]
                with m.If(self.kv.valid):
                    # The max_len-th row ends the sequence even without `last`.
                    with m.If(self.kv.payload.last | (load_row == L - 1)):
                        m.d.sync += [last_row.eq(load_row), load_row.eq(0)]
                        m.next = "QUERY"
                    with m.Else():
                        m.d.sync += load_row.eq(load_row + 1)

            with m.State("QUERY"):
                m.d.comb += self.query.ready.eq(1)
                with m.If(self.query.valid):
                    beat = self.query.payload
                    m.d.sync += [
                        q.eq(beat.q), scale.eq(beat.scale), shift.eq(beat.shift),
                        last_query.eq(beat.last),
                        step.eq(0), candidates.eq(0), kept.eq(0), total.eq(0),
                    ]
                    for i in range(d):
                        m.d.sync += acc[i].eq(0)
                    m.d.comb += recip.start.eq(1)
                    if use_topk:
                        m.d.comb += topk.clear.eq(1)
                    m.next = "SCORE"

            with m.State("SCORE"):
                m.d.sync += step.eq(step + 1)
                with m.If(step <= last_row):
                    m.d.sync += [score_stage.valid.eq(1), score_stage.index.eq(step)]
                with m.If(cand_product.valid & (cand_product.index == last_row)):
                    m.d.sync += step.eq(0)
                    m.next = "SOFTMAX"

            with m.State("SOFTMAX"):
                m.d.sync += step.eq(step + 1)
                with m.If(step < candidates):
                    m.d.sync += [soft_list.valid.eq(1), soft_list.last.eq(step == candidates - 1)]
                with m.If(soft_z.valid & soft_z.last):
                    m.d.sync += step.eq(0)
                    m.next = "DIVIDE"

            with m.State("DIVIDE"):
                m.d.comb += recip.step.eq(1)
                m.d.sync += step.eq(step + 1)
                with m.If(step == cfg.divide_cycles - 1):
                    m.d.sync += step.eq(0)
                    m.next = "WEIGH"

            with m.State("WEIGH"):
                m.d.sync += step.eq(step + 1)
                with m.If(step < kept):
                    m.d.sync += [pv_list.valid.eq(1), pv_list.last.eq(step == kept - 1)]
                with m.If(pv_prob.valid & pv_prob.last):
                    m.next = "OUTPUT"

            with m.State("OUTPUT"):
                m.d.comb += self.out.valid.eq(1)
                with m.If(self.out.ready):
                    with m.If(last_query):
                        m.next = "LOAD"
                    with m.Else():
                        m.next = "QUERY"
        return m
