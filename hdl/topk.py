"""Top-k selection by insertion into k sorted registers, one candidate per clock."""

import operator

from amaranth.hdl import Module, Shape, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out


class TopK(wiring.Component):
    """Keeps the k best (score, index) pairs seen since `clear`, best first.

    Order: a higher score is better; between equal scores the lower index is better. Candidates
    arrive in increasing index order, so an equal score never displaces an entry already held:
    slot i is overtaken only by a strictly higher score. After the last candidate, slot k - 1
    (the `cutoff`) decides membership of any position j in the top k:
        kept(s_j, j) = cutoff empty, or s_j > cutoff score, or (s_j = cutoff score and j <= its index).
    That test is `kept`, combinational in `test_score` and `test_index`. `entering` says whether
    the candidate being offered enters the list, i.e. ranks among the top k of what has been seen
    so far including itself: a position that does not enter can never be in the final top k.

    Members
    -------
    clear       : In(1)   empty every slot
    insert      : In(1)   offer (score, index)
    score       : In(score_shape)
    index       : In(unsigned(index_width))
    entering    : Out(1)  (score, index) would enter the list (combinational)
    test_score  : In(score_shape)
    test_index  : In(unsigned(index_width))
    kept        : Out(1)
    """

    def __init__(self, *, k, score_shape, index_width):
        self.k = operator.index(k)
        if self.k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        self.score_shape = Shape.cast(score_shape)
        self.index_width = operator.index(index_width)
        self.slot_layout = data.StructLayout({
            "valid": 1, "score": self.score_shape, "index": unsigned(self.index_width)})
        super().__init__({
            "clear": In(1),
            "insert": In(1),
            "score": In(self.score_shape),
            "index": In(unsigned(self.index_width)),
            "entering": Out(1),
            "test_score": In(self.score_shape),
            "test_index": In(unsigned(self.index_width)),
            "kept": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        slots = [Signal(self.slot_layout, name=f"slot_{i}") for i in range(self.k)]
        # beats[i]: the candidate belongs at slot i or above. Monotone over i (slots are sorted).
        beats = [Signal(name=f"beats_{i}") for i in range(self.k)]
        for i, slot in enumerate(slots):
            m.d.comb += beats[i].eq(~slot.valid | (self.score > slot.score))
        m.d.comb += self.entering.eq(beats[-1])
        incoming = Signal(self.slot_layout)
        m.d.comb += [incoming.valid.eq(1), incoming.score.eq(self.score), incoming.index.eq(self.index)]
        with m.If(self.clear):
            for slot in slots:
                m.d.sync += slot.valid.eq(0)
        with m.Elif(self.insert):
            for i, slot in enumerate(slots):
                if i == 0:
                    with m.If(beats[0]):
                        m.d.sync += slot.eq(incoming)
                else:
                    with m.If(beats[i - 1]):
                        m.d.sync += slot.eq(slots[i - 1])     # shifted down by a better candidate
                    with m.Elif(beats[i]):
                        m.d.sync += slot.eq(incoming)
        cutoff = slots[-1]
        m.d.comb += self.kept.eq(~cutoff.valid | (self.test_score > cutoff.score) |
                                 ((self.test_score == cutoff.score) & (self.test_index <= cutoff.index)))
        return m
