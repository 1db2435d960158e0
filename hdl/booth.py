"""A radix-4 Booth multiplier written out for LUT fabrics: the integer product of the array's LUT
cells (hdl/cell.py), one or two register stages.

Why not `a * b` and Yosys's `booth` pass: that pass sums the partial products as one many-operand
adder, which Yosys builds from LUT full adders; here every partial sum is a wire Yosys keeps
(hdl/tq.py `sum_with_carries`), so each becomes a two-operand adder on the FPGA's carry chain.
An 8 x 8 signed product between registers: 148 LUT4 on the iCE40 (ECP5 207) with `booth`, 109
(ECP5 109) this way.

The weight is recoded into radix-4 digits d_j in {-2, -1, 0, 1, 2} (bits b_{2j+1}, b_{2j},
b_{2j-1}: d_j = -2 b_{2j+1} + b_{2j} + b_{2j-1}); row j is d_j * a * 4**j, formed as
(|d_j| * a) ^ neg_j plus neg_j (two's complement without an adder: the +1 goes into the zeros
below the next row, or into a row of its own for the last). Unsigned operands are extended by a
zero bit first, so one recoding serves every format the array accepts.

The last row's +1 has no zeros to go into: it costs an adder of its own (10 of an int8 cell's 147
LUT4 at alpha 1), and the others a flip-flop each between two product stages. Every neg_j is a bit
of the weight, known when the weight loads, so an array can leave them all out of every cell
(`defer_negation`) and add its cells' sum of sum_j neg_j 4**j once at the head of each row
(hdl/systolic.py): 16 LUT4 and 4 flip-flops fewer per int8 cell.
"""

from amaranth.hdl import Cat, Const, Signal, Value, signed

from .replicas import replica
from .tq import sum_with_carries


class BoothMultiply:
    """A cell's integer product: a callable (module, operand, weight, *, split) -> Value with a
    `shape`, as hdl.cell.ColumnCombiningCell's `multiply` expects.

    Exact modulo 2**width for any operands of the given formats; width = act_width +
    weight_width + 1 (the cell's integer product width) holds every product, so the value is the
    true product. `split`: register the partial-product rows (the first of two product stages)
    and sum them in the next.

    `defer_negation`: leave out every row's +1, so that the value is the product less
    sum_j neg_j 4**j, a function of the weight alone (`negations`; see the module's docstring)."""

    def __init__(self, *, act_width, act_signed, weight_width, weight_signed, defer_negation=False):
        self.act_width, self.act_signed = act_width, act_signed
        self.weight_width, self.weight_signed = weight_width, weight_signed
        self.width = act_width + weight_width + 1
        self.shape = signed(self.width)
        self.defer_negation = bool(defer_negation)

    def negations(self, weight):
        """[(neg_j, 2 j)]: the bits of `weight` that say which rows are negated, and their shifts."""
        return [(high, 2 * j) for j, (_low, _mid, high) in enumerate(self.windows(weight))]

    def _extended(self, value, width, is_signed):
        """`value` as a signed Value (one zero bit more when unsigned)."""
        value = Value.cast(value)[:width]
        return value.as_signed() if is_signed else Cat(value, Const(0, 1)).as_signed()

    def _window_bits(self):
        """[(i, i, i)] per digit j: which bit of the weight each of b_{2j-1}, b_{2j}, b_{2j+1} is
        (None: a zero, b_{-1} or above an unsigned weight; bits above a signed one repeat its sign)."""
        extended = self.weight_width + (not self.weight_signed)

        def source(i):
            if i < 0 or (i >= self.weight_width and not self.weight_signed):
                return None
            return min(i, self.weight_width - 1)
        return [tuple(source(i) for i in range(2 * j - 1, 2 * j + 2)) for j in range((extended + 1) // 2)]

    def windows(self, weight):
        """[(low, mid, high)] per digit j: the weight bits b_{2j-1}, b_{2j}, b_{2j+1} that digit j
        recodes."""
        weight = Value.cast(weight)
        return [tuple(Const(0, 1) if i is None else weight[i] for i in window) for window in self._window_bits()]

    def registered_windows(self, m, weight):
        """`windows(weight)`, each digit's in registers of its own: copies (hdl/replicas.py), so
        that a weight bit two digits recode (b_{2j+1}, digit j's sign and digit j + 1's low bit)
        reaches each digit's row from a register beside it, not from one register shared by two
        rows that the placer may put between them (the critical path of ULX3S builds: such a bit
        routed 38 columns to the row it selects in)."""
        weight = Value.cast(weight)
        registered = []
        for j, window in enumerate(self._window_bits()):
            copies = {}
            for i in window:
                if i is not None and i not in copies:
                    copies[i] = replica(1, f"booth{j}_weight{i}")
                    m.d.sync += copies[i].eq(weight[i])
            registered.append(tuple(Const(0, 1) if i is None else copies[i] for i in window))
        return registered

    def rows(self, m, operand, windows):
        """[(row, neg, shift)]: row = (|d_j| * a) ^ neg as a signed value len(a) + 1 bits wide,
        to be added << shift (= 2 j), plus neg << shift. `windows`: the weight's, per digit
        (`windows` or `registered_windows`)."""
        a = self._extended(operand, self.act_width, self.act_signed)
        a_wide = Cat(a, a[-1])                      # a, one bit wider
        a_twice = Cat(Const(0, 1), a)               # 2a
        rows = []
        for j, (low, mid, high) in enumerate(windows):
            one = Signal(name=f"booth{j}_one")      # |d_j| == 1
            two = Signal(name=f"booth{j}_two")      # |d_j| == 2
            neg = Signal(name=f"booth{j}_neg")      # d_j < 0 (or the "-0" of 111, which adds ~0 + 1)
            m.d.comb += [one.eq(low ^ mid), two.eq((high & ~mid & ~low) | (~high & mid & low)), neg.eq(high)]
            row = Signal(signed(len(a_wide)), name=f"booth{j}_row")
            picked = (a_wide & one.replicate(len(a_wide))) | (a_twice & two.replicate(len(a_wide)))
            m.d.comb += row.eq(picked ^ neg.replicate(len(a_wide)))
            rows.append((row, neg, 2 * j))
        return rows

    def total(self, m, rows):
        """The sum of `rows` (as `rows` returns them) modulo 2**width, on carry chains: each row's
        neg goes into the zeros below the next row; the last one's into an addend of its own."""
        P = self.width
        addends = []
        pending = []                                # (neg, shift) of the rows before
        for row, neg, shift in rows:
            value = Signal(P, name=f"booth_addend{len(addends)}")
            m.d.comb += value.eq(row << shift)             # sign-extended to P bits
            for bit, at in pending:                         # the previous row's neg, inside this row's zeros
                m.d.comb += value[at].eq(bit)
            pending = [] if self.defer_negation else [(neg, shift)]
            addends.append((value, None))
        for last_neg, last_shift in pending:
            carry_row = Signal(P, name="booth_last_neg")
            m.d.comb += carry_row.eq(last_neg << last_shift)
            addends.append((carry_row, None))
        return sum_with_carries(m, addends, P, name="booth_sum")

    def __call__(self, m, operand, weight, *, split=False, windows=None):
        """`windows`, if given, stand for `weight` (`registered_windows` of a weight a clock
        earlier: the cell's operand stage)."""
        rows = self.rows(m, operand, self.windows(weight) if windows is None else windows)
        if split:
            registered = []
            for k, (row, neg, shift) in enumerate(rows):
                row_reg = Signal.like(row, name=f"booth{k}_row_reg", reset_less=True)
                m.d.sync += row_reg.eq(row)
                if not self.defer_negation:
                    neg_reg = Signal(name=f"booth{k}_neg_reg", reset_less=True)
                    m.d.sync += neg_reg.eq(neg)
                    neg = neg_reg
                registered.append((row_reg, neg, shift))
            rows = registered
        return self.total(m, rows)
