"""The model accelerator of a layer graph: convolutions, residual adds, global average pooling
(software/packing/graph_program.py says what the program is; hdl/accel/top.py is the chain's).

    images --> queue --> scatter --> activation memory (R lane-class memories) --> reader --> array
                 ^        (rounds)                                                            |
                 |                                                                            v
                 +----------- post-processing (bias, shift, saturation, residual add) <-- results
                                   |                     |
                           residual buffer          logits buffer --> logits

Steps run one after another: step s starts once every write of step s - 1 is done.
  * load: each pixel goes into the queue, with its channel's rounds (one per consumer and tap).
  * feed: for each row block, each group block, each image, each position, one word of the step's
    input region to the array (the chain's feed with images x positions vectors).
  * post-process (POST_STAGES clocks): bias, rounding right shift (pre-shift and round), left shift,
    saturation (unsigned, or signed for a value only an add reads); a fused add's operand shift, the
    residual buffer's value added and saturated; the value's own shift into the residual buffer if a
    later add reads it. Logits go to the logits buffer, values with readers to the queue.
  * scatter: a queue entry (R values, or a pixel) takes its rounds, one per clock: each round's
    table entry names the consumer and tap and, per lane class memory, whether it is written, by
    which row (a crossbar) at which word and lane; the spatial table gives the word of the output
    position the value goes to (or a 0 into a padding word). An entry's first round two clocks
    after its pop (QUEUE_LATENCY), its write four after the round (SCATTER_STAGES).
Results are taken from the array only while the queue and the logits buffer are sure to have room
(credits), so nothing after the array stalls.
"""

import math

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.systolic import SystolicArray
from spec.graph_model import LOGITS_LATENCY, POST_STAGES

from .reader import MemoryReader

# Entries: more than the post-processing pipeline and the buffer's own latency hold in flight, so a
# burst of logits beats (a row block's images, one per clock) never finds the credit spent. (At 8, a
# batch of 8 stalled the array for 6 clocks and the cycle model was off by as many.)
LOGITS_BUFFER = 16
assert LOGITS_BUFFER > POST_STAGES + LOGITS_LATENCY


def _width(count):
    return max(1, (max(count, 2) - 1).bit_length())


def _odometer(m, digits):
    """Advance nested counters by one, least significant first. Each digit is (counter, last, on_wrap,
    on_step): at `last` the counter returns to 0, runs `on_wrap` and carries into the next digit;
    otherwise it counts up and runs `on_step` (statements for m.d.sync)."""
    (counter, last, on_wrap, on_step), rest = digits[0], digits[1:]
    with m.If(last):
        m.d.sync += [counter.eq(0), *on_wrap]
        if rest:
            _odometer(m, rest)
    with m.Else():
        m.d.sync += [counter.eq(counter + 1), *on_step]


class GraphAccelerator(wiring.Component):
    """The accelerator of one GraphProgram.

    Members
    -------
    images : In(stream.Signature({pixel, last}))   C x H x W pixels per image, `last` on the batch's last
    logits : Out(stream.Signature(rows logits))    per row block of the last step, per image
    """

    def __init__(self, config, *, program, shared_prefix=None, dsp_cells=0):
        if program.config != config:
            raise ValueError("the program was compiled for another configuration")
        self.config, self.program = config, program
        self.positions = [s.positions for s in program.steps]
        self.array_config = config.array
        self.array = SystolicArray(config.array, shared_prefix=shared_prefix, dsp_cells=dsp_cells)
        self.shared_modules = self.array.shared_modules
        self.bias_width, self.shift_width, self.left_width = config.bias_width, config.shift_width, config.left_width
        self.total_width, self.logit_width = config.total_width, config.logit_width
        self.value_width, self.residual_width = config.value_width, config.residual_width
        self.queue_depth = config.queue_depth
        self.image_layout = data.StructLayout({"pixel": config.act_width, "last": 1})
        super().__init__({
            "images": In(stream.Signature(self.image_layout)),
            "logits": Out(stream.Signature(data.ArrayLayout(signed(config.logit_width), config.rows))),
        })

    # ------------------------------------------------------------------------------------------
    # What goes into the memories

    def _round_tables(self):
        """The round table's entries; (first entry, rounds) per step and row block, and per input
        channel (the loader's); the spatial table's entries, every (consumer, tap)'s row in turn."""
        P = self.program
        spatial, spatial_base = [], {}
        for k, step in enumerate(P.steps):
            words = step.layout.words
            for t, row in enumerate(step.layout.spatial):
                spatial_base[(k, t)] = len(spatial)
                spatial.extend({"offset": max(p, 0) * words, "zero": int(zero), "valid": int(p >= 0)}
                               for p, zero in row)
        entries = []

        def add(rounds):
            base = len(entries)
            for rnd in rounds:
                classes = [{"en": 0, "src": 0, "word": 0, "lane": 0} for _ in range(P.rows)]
                for row, word, lane in rnd.writes:
                    classes[lane % P.rows] = {"en": 1, "src": row, "word": word, "lane": lane // P.rows}
                entries.append({"consumer": rnd.consumer, "spatial_row": spatial_base[(rnd.consumer, rnd.tap)],
                                "classes": classes})
            return base, len(rounds)

        blocks = [[add(rounds) for rounds in step.rounds] for step in P.steps]
        channels = [add(rounds) for rounds in P.loader_rounds]
        return entries, blocks, channels, spatial

    # ------------------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        P = self.program
        R, lanes, S = P.rows, P.lanes, len(P.steps)
        aw = P.act_width
        m.submodules.array = array = self.array
        addr_width = _width(P.act_depth)
        entries, self._block_rounds, channel_rounds, spatial = self._round_tables()
        per_class = math.ceil(lanes / R)

        # ---- weights: every tile's beats, round and round
        beats = P.weight_beats
        m.submodules.weight_memory = weight_memory = memory.Memory(
            shape=unsigned(self.array_config.weight_beat_width), depth=max(len(beats), 2), init=beats)
        m.submodules.weight_reader = weight_reader = MemoryReader(_width(len(beats)),
                                                                  self.array_config.weight_beat_width, 1)
        wport = weight_memory.read_port()
        weight_addr = Signal(range(max(len(beats), 2)))
        m.d.comb += [
            wport.addr.eq(weight_reader.mem_addr), wport.en.eq(weight_reader.mem_en),
            weight_reader.mem_data.eq(wport.data),
            weight_reader.addresses.valid.eq(1), weight_reader.addresses.payload.addr.eq(weight_addr),
            array.weights.valid.eq(weight_reader.data.valid), array.weights.payload.eq(weight_reader.data.payload.data),
            weight_reader.data.ready.eq(array.weights.ready),
        ]
        with m.If(weight_reader.addresses.ready):
            m.d.sync += weight_addr.eq(Mux(weight_addr == len(beats) - 1, 0, weight_addr + 1))

        # ---- the activation memory: R lane-class memories, lane l in memory l % R at slice l // R
        m.submodules.act_reader = act_reader = MemoryReader(
            addr_width, lanes * aw, data.StructLayout({"last": 1, "clear": 1, "emit": 1}))
        class_data, class_writes = [], []
        for r in range(min(R, lanes)):
            mem = memory.Memory(shape=unsigned(per_class * aw), depth=max(P.act_depth, 2), init=[])
            m.submodules[f"lanes_{r}"] = mem
            read, write = mem.read_port(), mem.write_port(granularity=aw)
            m.d.comb += [read.addr.eq(act_reader.mem_addr), read.en.eq(act_reader.mem_en)]
            class_data.append(read.data)
            class_writes.append(write)
        m.d.comb += act_reader.mem_data.eq(Cat(class_data[j % R].word_select(j // R, aw) for j in range(lanes)))

        # ---- sequencing state
        loading = Signal(init=1)
        step = Signal(range(max(S, 2)))         # the step being fed
        last_image = Signal(range(max(P.batch, 2)))
        start_step = Signal()                    # a pulse: feed `step` from its start (a clock after it is set)
        in_steps = Signal()                      # the batch has loaded: a finished write ends a step

        # ---- load: pixels into the queue
        channels, height, width = P.input_shape
        pixel_c = Signal(range(max(channels, 2)))
        pixel_q = Signal(range(max(height * width, 2)))
        load_image = Signal(range(max(P.batch, 2)))
        channel_table = memory.Memory(shape=data.StructLayout({"base": _width(len(entries) + 1),
                                                               "count": _width(max(len(r) for r in P.loader_rounds) + 1)}),
                                      depth=max(channels, 2), init=[{"base": b, "count": n} for b, n in channel_rounds])
        m.submodules.channel_table = channel_table

        # ---- feed
        feeding = Signal()
        row_block = Signal(range(max(2, *(math.ceil(s.out_features / R) for s in P.steps))))
        group_block = Signal(range(max(2, *(s.layout.words for s in P.steps))))
        image = Signal(range(max(P.batch, 2)))
        position = Signal(range(max(2, *self.positions)))
        image_last, position_last = Signal(), Signal()
        feed_address = Signal(addr_width)
        words = Signal(range(max(s.layout.words for s in P.steps) + 1))
        blocks = Signal(range(max(math.ceil(s.out_features / R) for s in P.steps) + 1))
        positions = Signal(range(max(self.positions) + 1))
        region = Signal(addr_width)
        with m.Switch(step):
            for s, st in enumerate(P.steps):
                with m.Case(s):
                    m.d.comb += [words.eq(st.layout.words), blocks.eq(math.ceil(st.out_features / R)),
                                 positions.eq(st.positions), region.eq(st.region)]
        tag = act_reader.addresses.payload.tag
        m.d.comb += [
            act_reader.addresses.valid.eq(feeding),
            act_reader.addresses.payload.addr.eq(feed_address),
            tag.last.eq(image_last & position_last),
            tag.clear.eq(group_block == 0),
            tag.emit.eq(group_block == words - 1),
        ]
        with m.If(act_reader.addresses.valid & act_reader.addresses.ready):
            next_word = feed_address.eq(feed_address + words)
            _odometer(m, [
                (position, position_last, [position_last.eq(positions == 1)],
                 [position_last.eq(position + 2 == positions), next_word]),
                (image, image_last, [image_last.eq(last_image == 0)],
                 [image_last.eq(image + 1 == last_image), next_word]),
                (group_block, group_block == words - 1, [feed_address.eq(region)],
                 [feed_address.eq(region + group_block + 1)]),
                (row_block, row_block == blocks - 1, [feeding.eq(0)], []),
            ])
        with m.If(start_step):
            m.d.sync += [feeding.eq(1), row_block.eq(0), group_block.eq(0), image.eq(0), position.eq(0),
                         image_last.eq(last_image == 0), position_last.eq(positions == 1), feed_address.eq(region)]
        m.d.comb += [
            array.activations.valid.eq(act_reader.data.valid),
            array.activations.payload.data.as_value().eq(act_reader.data.payload.data),
            array.activations.payload.last.eq(act_reader.data.payload.tag.last),
            array.activations.payload.clear.eq(act_reader.data.payload.tag.clear),
            array.activations.payload.emit.eq(act_reader.data.payload.tag.emit),
            act_reader.data.ready.eq(array.activations.ready),
        ]

        # ---- post-processing
        queue_layout = data.StructLayout({
            "values": data.ArrayLayout(aw, R), "base": _width(len(entries) + 1),
            "count": _width(max([len(r) for s in P.steps for r in s.rounds] + [len(r) for r in P.loader_rounds]) + 1),
            "image": range(max(P.batch, 2)), "q": range(max(2, *(s.layout.geometry.in_positions for s in P.steps))),
            "end": 1})
        post = self._post_processing(m, array, queue_layout, last_image)
        # ---- the queue and the scatter
        m.submodules.queue = queue = memory.Memory(shape=queue_layout, depth=self.queue_depth, init=[])
        qw, qr = queue.write_port(), queue.read_port(transparent_for=())
        w_ptr, r_ptr = Signal(range(self.queue_depth)), Signal(range(self.queue_depth))
        occupancy = Signal(range(self.queue_depth + 1))
        reserved = post["queue_reserved"]

        # Pixels: accepted while the queue is sure to have room.
        cport = channel_table.read_port(domain="comb")
        pixel_taken = Signal()
        batch_end = Signal()
        m.d.comb += [
            self.images.ready.eq(loading & (reserved < self.queue_depth)),
            pixel_taken.eq(self.images.valid & self.images.ready),
            cport.addr.eq(pixel_c),
            batch_end.eq((pixel_c == channels - 1) & (pixel_q == height * width - 1)
                         & (self.images.payload.last | (load_image == P.batch - 1))),
        ]
        with m.If(pixel_taken):
            _odometer(m, [(pixel_q, pixel_q == height * width - 1, [], []),
                          (pixel_c, pixel_c == channels - 1, [], []),
                          (load_image, batch_end, [loading.eq(0), last_image.eq(load_image)], [])])

        push = Signal()
        with m.If(loading):
            m.d.comb += [
                push.eq(pixel_taken),
                qw.data.values[0].eq(self.images.payload.pixel),
                qw.data.base.eq(cport.data.base), qw.data.count.eq(cport.data.count),
                qw.data.image.eq(load_image), qw.data.q.eq(pixel_q), qw.data.end.eq(batch_end),
            ]
        with m.Else():
            m.d.comb += [
                push.eq(post["queue_push"]),
                qw.data.eq(post["queue_entry"]),
            ]
        m.d.comb += [qw.addr.eq(w_ptr), qw.en.eq(push)]
        with m.If(push):
            m.d.sync += w_ptr.eq(Mux(w_ptr == self.queue_depth - 1, 0, w_ptr + 1))

        # The scatter: one round per clock. A popped entry reaches the scatter two clocks later, through
        # the queue's output register and one of ours (a deep queue is many block RAMs and a multiplexer:
        # from its output straight into the round table's address the ULX3S's batch-8 build made
        # 15.6 ns, 64 MHz), so the next entry is popped in the clock of this one's second-to-last round.
        # Every entry has at least two rounds (the compiler pads), and whether to pop comes from
        # registers alone (from the queue's output it was the OrangeCrab's critical path, 97 MHz). The
        # queue is read every clock at r_ptr, which moves only on a pop, so no pop drives the clock
        # enable of its block RAMs either (the ULX3S: 17.1 ns, 58.5 MHz).
        in_flight, fresh = Signal(), Signal()   # popped one / two clocks ago
        head = Signal(queue_layout, reset_less=True)
        cur = Signal(queue_layout, reset_less=True)
        ptr = Signal.like(cur.base)
        left = Signal.like(cur.count)       # rounds still to issue, this clock's included (not fresh)
        issue, issue_base, last_round = Signal(), Signal.like(cur.base), Signal()
        source = Signal(queue_layout)
        pop = Signal()
        m.d.sync += head.eq(qr.data)
        m.d.comb += source.eq(Mux(fresh, head, cur))
        with m.If(fresh):
            m.d.comb += [issue.eq(1), issue_base.eq(head.base)]
            m.d.sync += [cur.eq(head), ptr.eq(head.base + 1), left.eq(head.count - 1)]
        with m.Elif(left != 0):
            m.d.comb += [issue.eq(1), issue_base.eq(ptr), last_round.eq(left == 1)]
            m.d.sync += [ptr.eq(ptr + 1), left.eq(left - 1)]
        free_in_two = Mux(fresh, head.count == 2, left <= 2)     # nothing left to issue after next clock
        m.d.comb += [pop.eq((occupancy != 0) & ~in_flight & free_in_two), qr.addr.eq(r_ptr), qr.en.eq(1)]
        m.d.sync += [in_flight.eq(pop), fresh.eq(in_flight)]
        with m.If(pop):
            m.d.sync += r_ptr.eq(Mux(r_ptr == self.queue_depth - 1, 0, r_ptr + 1))
        m.d.sync += occupancy.eq(occupancy + push - pop)
        m.d.comb += post["queue_pop"].eq(pop)

        # Round pipeline: issue (round table read) -> spatial read and image base -> address -> write.
        class_entry = data.StructLayout({"en": 1, "src": _width(R), "word": _width(max(s.layout.words for s in P.steps)),
                                         "lane": _width(per_class)})
        round_layout = data.StructLayout({"consumer": range(max(S, 2)), "spatial_row": _width(len(spatial) + 1),
                                          "classes": data.ArrayLayout(class_entry, R)})
        m.submodules.round_table = round_table = memory.Memory(shape=round_layout, depth=max(len(entries), 2),
                                                               init=entries)
        spatial_layout = data.StructLayout({"offset": addr_width, "zero": 1, "valid": 1})
        m.submodules.spatial_table = spatial_table = memory.Memory(shape=spatial_layout, depth=max(len(spatial), 2),
                                                                   init=spatial)
        rport, sport = round_table.read_port(), spatial_table.read_port()
        m.d.comb += [rport.addr.eq(issue_base), rport.en.eq(1)]
        # stage 1: the round entry is out
        v1, last1 = Signal(), Signal()
        s1 = Signal(queue_layout, reset_less=True)
        m.d.sync += [v1.eq(issue), s1.eq(source), last1.eq(source.end & last_round)]
        e1 = rport.data
        m.d.comb += [sport.addr.eq(e1.spatial_row + s1.q), sport.en.eq(1)]
        # stage 2: the spatial entry is out; the consumer's image base registered
        v2, last2 = Signal(), Signal()
        e2 = Signal(round_layout, reset_less=True)
        values2 = Signal.like(s1.values, reset_less=True)
        # Each consumer's first word for each image, from a table (no multiplier between the round
        # table and the address: image x words per image was the ULX3S's critical path, 17.3 ns).
        image_bits = _width(P.batch)
        bases = [st.region + i * st.positions * st.layout.words if i < P.batch else 0
                 for st in P.steps for i in range(1 << image_bits)]
        m.submodules.image_bases = image_bases = memory.Memory(shape=unsigned(addr_width), depth=len(bases),
                                                               init=bases)
        bport = image_bases.read_port()
        m.d.comb += [bport.addr.eq(Cat(s1.image[:image_bits], e1.consumer)), bport.en.eq(1)]
        base2 = bport.data
        m.d.sync += [v2.eq(v1), last2.eq(v1 & last1), e2.eq(e1), values2.eq(s1.values)]
        sp = sport.data
        # stage 3: the consumer's word for this output position (one adder, shared), and per class
        # memory its word, lane and value; stage 4: per class the address. (Both adds in one stage, the
        # spatial table's output through 11 carry steps was the ULX3S's critical path: 80.5 MHz.)
        v3, last3, v4, last4 = Signal(), Signal(), Signal(), Signal()
        position3 = Signal(addr_width, reset_less=True)
        m.d.sync += [v3.eq(v2), last3.eq(last2), v4.eq(v3), last4.eq(last3), position3.eq(base2 + sp.offset)]
        for r, write in enumerate(class_writes):
            ce = e2.classes[r]
            word3 = Signal.like(ce.word, name=f"word3_{r}", reset_less=True)
            value3 = Signal(aw, name=f"value3_{r}", reset_less=True)
            en3 = Signal(name=f"en3_{r}")
            lane3 = Signal(_width(per_class), name=f"lane3_{r}", reset_less=True)
            m.d.sync += [word3.eq(ce.word), lane3.eq(ce.lane), value3.eq(Mux(sp.zero, 0, values2[ce.src])),
                         en3.eq(v2 & sp.valid & ce.en)]
            addr4 = Signal(addr_width, name=f"addr4_{r}", reset_less=True)
            value4 = Signal(aw, name=f"value4_{r}", reset_less=True)
            en4 = Signal(name=f"en4_{r}")
            lane4 = Signal(_width(per_class), name=f"lane4_{r}", reset_less=True)
            m.d.sync += [addr4.eq(position3 + word3), value4.eq(value3), en4.eq(en3), lane4.eq(lane3)]
            m.d.comb += [write.addr.eq(addr4), write.data.eq(value4.replicate(per_class))]
            for j in range(per_class):
                m.d.comb += write.en[j].eq(en4 & (lane4 == j))
        scatter_done = Signal()
        m.d.comb += scatter_done.eq(v4 & last4)

        # ---- sequencing: the load's last write starts step 0; a step's last write (or, with nothing
        # to scatter, its last residual) starts the next; the logits of the last step end the batch.
        step_done = Signal()
        m.d.comb += step_done.eq(scatter_done | post["residual_done"])
        m.d.sync += start_step.eq(step_done)
        with m.If(step_done):
            m.d.sync += [step.eq(Mux(in_steps, step + 1, 0)), in_steps.eq(1)]
        with m.If(post["batch_done"]):
            m.d.sync += [loading.eq(1), in_steps.eq(0)]
        m.d.comb += [post["phase_loading"].eq(loading), post["pixel_taken"].eq(pixel_taken)]
        return m

    # ------------------------------------------------------------------------------------------

    def _post_processing(self, m, array, queue_layout, last_image):
        """The post-processing pipeline behind the array; returns the signals the rest uses."""
        P = self.program
        R, S, aw = P.rows, len(P.steps), P.act_width
        top = (1 << aw) - 1
        row = data.StructLayout({"bias": signed(self.bias_width), "pre": self.shift_width, "round": 1,
                                 "left": self.left_width})
        table, block_info, table_base = [], [], []
        for s, st in enumerate(P.steps):
            table_base.append(len(table))
            for rb in range(math.ceil(st.out_features / R)):
                rows = []
                for r in range(R):
                    f = rb * R + r
                    if f >= st.out_features:
                        rows.append({"bias": 0, "pre": 0, "round": 0, "left": 0})
                        continue
                    shift = int(st.shift[f])
                    if st.logits:
                        rows.append({"bias": int(st.bias[f]), "pre": 0, "round": 0, "left": shift})
                    else:
                        rows.append({"bias": int(st.bias[f]), "pre": max(shift - 1, 0), "round": int(shift > 0),
                                     "left": max(-shift, 0)})
                table.append(rows)
                base, count = self._block_rounds[s][rb] if any(st.rounds) else (0, 0)
                block_info.append({"base": base, "count": count})
        m.submodules.post_table = post_table = memory.Memory(shape=data.ArrayLayout(row, R), depth=max(len(table), 2),
                                                             init=table)
        m.submodules.block_table = block_table = memory.Memory(
            shape=data.StructLayout({"base": queue_layout["base"].shape, "count": queue_layout["count"].shape}),
            depth=max(len(block_info), 2), init=block_info)
        res_depth = max(P.residual_depth, 2)
        m.submodules.residual = residual = memory.Memory(
            shape=data.ArrayLayout(signed(self.residual_width), R), depth=res_depth, init=[])
        m.submodules.logits_buffer = logits_buffer = fifo.SyncFIFOBuffered(
            width=R * self.logit_width, depth=LOGITS_BUFFER)

        # Where the results are: step, row block, image, position, and the beat's index in its step.
        post_step = Signal(range(max(S, 2)))
        post_block = Signal(range(max(2, *(math.ceil(s.out_features / R) for s in P.steps))))
        post_image = Signal(range(max(P.batch, 2)))
        post_pos = Signal(range(max(2, *self.positions)))
        beat = Signal(range(max(res_depth, 2) + 1))
        p_blocks = Signal(range(max(math.ceil(s.out_features / R) for s in P.steps) + 1))
        p_positions = Signal(range(max(self.positions) + 1))
        p_base = Signal(range(max(len(table), 2)))
        p = {name: Signal(name=f"p_{name}") for name in ("logits", "rounds", "signed", "add", "add_signed", "res")}
        p_add_shift, p_res_shift = Signal(5), Signal(5)
        p_add_region, p_res_region = Signal(range(res_depth)), Signal(range(res_depth))
        with m.Switch(post_step):
            for s, st in enumerate(P.steps):
                with m.Case(s):
                    m.d.comb += [p_blocks.eq(math.ceil(st.out_features / R)), p_positions.eq(st.positions),
                                 p_base.eq(table_base[s]), p["logits"].eq(st.logits), p["rounds"].eq(any(st.rounds)),
                                 p["signed"].eq(bool(st.bounds and st.bounds[0] < 0))]
                    if st.add:
                        m.d.comb += [p["add"].eq(1), p_add_shift.eq(st.add["shift"]), p_add_region.eq(st.add["region"]),
                                     p["add_signed"].eq(st.add["lo"] < 0)]
                    if st.residual_out:
                        m.d.comb += [p["res"].eq(1), p_res_shift.eq(st.residual_out["shift"]),
                                     p_res_region.eq(st.residual_out["region"])]

        queue_reserved = Signal(range(self.queue_depth + 1))
        logits_reserved = Signal(range(LOGITS_BUFFER + 1))
        taken = Signal()
        step_end = Signal()
        m.d.comb += [
            array.results.ready.eq((logits_reserved < LOGITS_BUFFER) & (queue_reserved < self.queue_depth)),
            taken.eq(array.results.valid & array.results.ready),
            step_end.eq((post_block == p_blocks - 1) & (post_image == last_image) & (post_pos == p_positions - 1)),
        ]
        with m.If(taken):
            m.d.sync += beat.eq(beat + 1)
            _odometer(m, [(post_pos, post_pos == p_positions - 1, [], []),
                          (post_image, post_image == last_image, [], []),
                          (post_block, post_block == p_blocks - 1, [beat.eq(0)], []),
                          (post_step, post_step == S - 1, [], [])])

        # Stage 0 (the handshake): table entries and the residual read; the context registered.
        tport, bport, rread = post_table.read_port(), block_table.read_port(), residual.read_port()
        m.d.comb += [tport.addr.eq(p_base + post_block), bport.addr.eq(p_base + post_block),
                     rread.addr.eq(p_add_region + beat), tport.en.eq(1), bport.en.eq(1), rread.en.eq(1)]
        ctx_layout = data.StructLayout({"logits": 1, "rounds": 1, "signed": 1, "add": 1, "add_signed": 1, "res": 1,
                                        "add_shift": 5, "res_shift": 5, "res_addr": range(res_depth), "end": 1,
                                        "image": range(max(P.batch, 2)), "q": range(max(2, *self.positions))})
        ctx = [Signal(ctx_layout, name=f"ctx{k}", reset_less=True) for k in range(POST_STAGES)]
        valid = [Signal(name=f"pvalid{k}") for k in range(POST_STAGES)]
        m.d.sync += [valid[0].eq(taken), ctx[0].logits.eq(p["logits"]), ctx[0].rounds.eq(p["rounds"]),
                     ctx[0].signed.eq(p["signed"]), ctx[0].add.eq(p["add"]), ctx[0].add_signed.eq(p["add_signed"]),
                     ctx[0].res.eq(p["res"]), ctx[0].add_shift.eq(p_add_shift), ctx[0].res_shift.eq(p_res_shift),
                     ctx[0].res_addr.eq(p_res_region + beat), ctx[0].end.eq(step_end),
                     ctx[0].image.eq(post_image), ctx[0].q.eq(post_pos)]
        for k in range(1, POST_STAGES):
            m.d.sync += [valid[k].eq(valid[k - 1]), ctx[k].eq(ctx[k - 1])]
        sums = Signal.like(array.results.payload, reset_less=True)
        m.d.sync += sums.eq(array.results.payload)
        blk = [Signal.like(bport.data, name=f"blk{k}", reset_less=True) for k in range(POST_STAGES)]
        m.d.sync += blk[1].eq(bport.data)
        for k in range(2, POST_STAGES):
            m.d.sync += blk[k].eq(blk[k - 1])
        res = [Signal.like(rread.data, name=f"res{k}", reset_less=True) for k in range(POST_STAGES)]
        m.d.sync += res[1].eq(rread.data)
        for k in range(2, POST_STAGES):
            m.d.sync += res[k].eq(res[k - 1])

        def rounding_shift(value, amount, width):
            """The integer model's rs(value, amount) for amount >= 0, in one stage (narrow values)."""
            pre, partial = Signal(5), Signal(signed(width))
            m.d.comb += [pre.eq(amount - 1), partial.eq(value >> pre)]
            return Mux(amount == 0, value, (partial + 1) >> 1)

        out_values = Signal(data.ArrayLayout(signed(self.value_width), R))
        out_residual = Signal(data.ArrayLayout(signed(self.residual_width), R))
        for r in range(R):
            e = [None, Signal.like(tport.data[r], name=f"e1_{r}", reset_less=True)]
            m.d.sync += e[1].eq(tport.data[r])
            for k in range(2, 4):
                e.append(Signal.like(e[1], name=f"e{k}_{r}", reset_less=True))
                m.d.sync += e[k].eq(e[k - 1])
            total = Signal(signed(self.total_width), name=f"total_{r}", reset_less=True)
            m.d.sync += total.eq(sums[r] + tport.data[r].bias)                             # stage 1
            partial = Signal(signed(self.total_width), name=f"partial_{r}", reset_less=True)
            m.d.sync += partial.eq(total >> e[1].pre)                                      # stage 2
            rounded = Signal(signed(self.total_width), name=f"rounded_{r}", reset_less=True)
            m.d.sync += rounded.eq(Mux(e[2].round, (partial + 1) >> 1, partial))          # stage 3
            shifted = Signal(signed(self.value_width), name=f"shifted_{r}")
            # No left shifter when the model shifts nothing left (the digits ResNet).
            m.d.comb += shifted.eq(rounded << e[3].left if self.config.left_shift else rounded)
            value = Signal(signed(self.value_width), name=f"value_{r}", reset_less=True)    # stage 4
            low = Mux(ctx[3].signed, -top, 0)
            m.d.sync += value.eq(Mux(ctx[3].logits, shifted,
                                     Mux(shifted < low, low, Mux(shifted > top, top, shifted))))
            operand = Signal(signed(aw + 2), name=f"operand_{r}", reset_less=True)          # stage 5
            m.d.sync += operand.eq(rounding_shift(value[:aw + 2].as_signed(), ctx[4].add_shift, aw + 2))
            summed = Signal(signed(self.value_width), name=f"summed_{r}", reset_less=True)  # stage 6
            total_add = Signal(signed(aw + 3), name=f"add_{r}")
            add_low = Mux(ctx[5].add_signed, -top, 0)
            m.d.comb += total_add.eq(operand + res[5][r])
            delayed = Signal(signed(self.value_width), name=f"delayed_{r}", reset_less=True)
            m.d.sync += delayed.eq(value)
            m.d.sync += summed.eq(Mux(ctx[5].add, Mux(total_add < add_low, add_low,
                                                      Mux(total_add > top, top, total_add)), delayed))
            final = Signal(signed(self.value_width), name=f"final_{r}", reset_less=True)   # stage 7
            resid = Signal(signed(self.residual_width), name=f"resid_{r}", reset_less=True)
            m.d.sync += [final.eq(summed),
                         resid.eq(rounding_shift(summed[:aw + 2].as_signed(), ctx[6].res_shift, aw + 2))]
            m.d.comb += [out_values[r].eq(final), out_residual[r].eq(resid)]

        o_valid, o_ctx, o_blk = valid[POST_STAGES - 1], ctx[POST_STAGES - 1], blk[POST_STAGES - 1]
        # Residual buffer write.
        rwrite = residual.write_port()
        m.d.comb += [rwrite.addr.eq(o_ctx.res_addr), rwrite.data.eq(out_residual), rwrite.en.eq(o_valid & o_ctx.res)]
        # Logits.
        logits_pushed = Signal()
        m.d.comb += [
            logits_pushed.eq(o_valid & o_ctx.logits),
            logits_buffer.w_en.eq(logits_pushed),
            logits_buffer.w_data.eq(Cat(out_values[r][:self.logit_width] for r in range(R))),
            self.logits.valid.eq(logits_buffer.r_rdy),
            self.logits.payload.as_value().eq(logits_buffer.r_data),
            logits_buffer.r_en.eq(self.logits.ready),
        ]
        logits_sent = Signal()
        m.d.comb += logits_sent.eq(self.logits.valid & self.logits.ready)
        m.d.sync += logits_reserved.eq(logits_reserved + (taken & p["logits"]) - logits_sent)
        # Queue entries.
        queue_push, queue_pop = Signal(), Signal()
        queue_entry = Signal(queue_layout)
        m.d.comb += [queue_push.eq(o_valid & o_ctx.rounds & ~o_ctx.logits),
                     queue_entry.base.eq(o_blk.base), queue_entry.count.eq(o_blk.count),
                     queue_entry.image.eq(o_ctx.image), queue_entry.q.eq(o_ctx.q), queue_entry.end.eq(o_ctx.end)]
        for r in range(R):
            m.d.comb += queue_entry.values[r].eq(out_values[r][:aw])
        phase_loading, pixel_taken = Signal(), Signal()
        m.d.sync += queue_reserved.eq(queue_reserved + Mux(phase_loading, pixel_taken,
                                                           taken & p["rounds"] & ~p["logits"]) - queue_pop)
        residual_done, batch_done = Signal(), Signal()
        m.d.comb += [residual_done.eq(o_valid & o_ctx.end & ~o_ctx.rounds & ~o_ctx.logits),
                     batch_done.eq(o_valid & o_ctx.end & o_ctx.logits)]
        return {"queue_reserved": queue_reserved, "queue_push": queue_push, "queue_entry": queue_entry,
                "queue_pop": queue_pop, "residual_done": residual_done, "batch_done": batch_done,
                "phase_loading": phase_loading, "pixel_taken": pixel_taken}
