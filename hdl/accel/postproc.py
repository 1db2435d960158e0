"""Post-processing of the array's result beats, one lane per row: bias, rounding shift, saturation.

For row r of a beat, with the row block's table entry (software/packing/program.py):
    total  = sum + bias                                 (total_width bits)
    hidden = clamp(((total + 2**(right-1)) >> right) << left, 0, 2**act_width - 1)   right > 0
             clamp(total << left, 0, 2**act_width - 1)                                right = 0
    logits = total << left
exactly software.frontend.quant.requant_shift's rounding (half up) and the integer model's logits.
The rounding add is split from the shift, ((total >> (right - 1)) + 1) >> 1, the same value (the
table holds right - 1 as `pre_shift` and right > 0 as `round`), so no stage holds more than one
adder, one barrel shifter or one comparator.

Stages (POSTPROC_STAGES in spec/model.py): the beat's handshake reads its table entry (clock r);
r + 1 adds the bias; r + 2 shifts right by right - 1; r + 3 rounds; r + 4 shifts left (if the
model has left shifts: `left_width`) and saturates; the registered values are written at r + 5. (With the rounding, the left shift and a
64-bit saturation in one stage, the iCEBreaker's critical path was 37 ns through 62 carry steps.) Nothing stalls: the sequencer takes a beat only when
everything after has room (the logits buffer's credit).
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from spec.model import POSTPROC_STAGES


def entry_layout(config):
    return data.StructLayout({name: unsigned(width) if name != "bias" else signed(width)
                              for name, width in config.table_fields})


class PostProcessor(wiring.Component):
    """`rows` post-processing lanes behind the array; the table of every row block inside.

    Members
    -------
    valid, sums, entry_index, dest, context : In   a result beat, its table entry's index, the
                                       address of its image's first input word of the next layer,
                                       and what travels with it (`context_shape`), at its handshake
    o_valid, o_values, o_write, o_lane_class, o_addr, o_context : Out   POSTPROC_STAGES clocks later:
                                       per row the value (activation or logit), whether it is
                                       written to the activation memory, its lane class and its
                                       address there (dest + the entry's word, added a clock ahead)
    """

    def __init__(self, config, table, context_shape, *, addr_width):
        self.config = config
        self.table = list(table)
        self.entry = entry_layout(config)
        self.total_width = config.total_width
        R = config.rows
        super().__init__({
            "valid": In(1),
            "sums": In(data.ArrayLayout(signed(config.acc_width), R)),
            "entry_index": In(range(max(len(self.table), 2))),
            "dest": In(addr_width),
            "context": In(context_shape),
            "o_valid": Out(1),
            "o_values": Out(data.ArrayLayout(signed(config.logit_width), R)),
            "o_write": Out(R),
            "o_lane_class": Out(data.ArrayLayout(config.lane_class_width, R)),
            "o_addr": Out(data.ArrayLayout(addr_width, R)),
            "o_context": Out(context_shape),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, R = self.config, self.config.rows
        entries = data.ArrayLayout(self.entry, R)
        m.submodules.table = table = memory.Memory(shape=unsigned(entries.size), depth=max(len(self.table), 2),
                                                   init=self.table)
        port = table.read_port()
        m.d.comb += [port.addr.eq(self.entry_index), port.en.eq(1)]
        read = entries(port.data)

        # Valid bits reset; the data path does not.
        valid = [Signal(name=f"valid_{k}") for k in range(POSTPROC_STAGES)]
        context = [Signal.like(self.context, name=f"context_{k}", reset_less=True) for k in range(POSTPROC_STAGES)]
        dest = [Signal.like(self.dest, name=f"dest_{k}", reset_less=True) for k in range(POSTPROC_STAGES - 1)]
        m.d.sync += [valid[0].eq(self.valid), context[0].eq(self.context), dest[0].eq(self.dest)]
        for k in range(1, POSTPROC_STAGES):
            m.d.sync += [valid[k].eq(valid[k - 1]), context[k].eq(context[k - 1])]
        for k in range(1, len(dest)):
            m.d.sync += dest[k].eq(dest[k - 1])
        sums = Signal.like(self.sums, reset_less=True)
        m.d.sync += sums.eq(self.sums)

        top = (1 << cfg.act_width) - 1
        for r in range(R):
            entry = [Signal(self.entry, name=f"entry_{k}_r{r}", reset_less=True) for k in range(1, POSTPROC_STAGES)]
            m.d.sync += entry[0].eq(read[r])
            for k in range(1, len(entry)):
                m.d.sync += entry[k].eq(entry[k - 1])
            # r + 1: the bias.
            total = Signal(signed(self.total_width), name=f"total_r{r}", reset_less=True)
            m.d.sync += total.eq(sums[r] + read[r].bias)
            # r + 2: all of the right shift but its last bit.
            partial = Signal(signed(self.total_width), name=f"partial_r{r}", reset_less=True)
            m.d.sync += partial.eq(total >> entry[0].pre_shift)
            # r + 3: the last bit, rounding half up.
            rounded = Signal(signed(self.total_width), name=f"rounded_r{r}", reset_less=True)
            m.d.sync += rounded.eq(Mux(entry[1].round, (partial + 1) >> 1, partial))
            # r + 4: the left shift, and for an activation the saturation, decided on the value
            # before the shift (x << left > top exactly when x > top >> left), so no comparator
            # is wider than the value.
            e = entry[2]
            value = Signal(signed(cfg.logit_width), name=f"value_r{r}", reset_less=True)
            if cfg.left_width:
                limit = Signal(range(top + 1), name=f"limit_r{r}")
                with m.Switch(e.left):
                    for left in range(cfg.act_width):
                        with m.Case(left):
                            m.d.comb += limit.eq(top >> left)
                    with m.Default():
                        m.d.comb += limit.eq(0)
                low = (rounded[:cfg.act_width] << e.left)[:cfg.act_width]
                activation = Mux(rounded < 0, 0, Mux(rounded > limit, top, low))
                m.d.sync += value.eq(Mux(context[3].logits, rounded << e.left, activation))
            else:       # nothing shifts left: no shifter, and the saturation is one comparison
                activation = Mux(rounded < 0, 0, Mux(rounded > top, top, rounded[:cfg.act_width]))
                m.d.sync += value.eq(Mux(context[3].logits, rounded, activation))
            address = Signal.like(self.dest, name=f"addr_r{r}", reset_less=True)
            m.d.sync += address.eq(dest[3] + e.word)
            e = entry[3]
            m.d.comb += [
                self.o_values[r].eq(value),
                self.o_write[r].eq(e.valid & ~context[4].logits),
                self.o_lane_class[r].eq(e.lane_class),
                self.o_addr[r].eq(address),
            ]
        m.d.comb += [self.o_valid.eq(valid[-1]), self.o_context.eq(context[-1])]
        return m

