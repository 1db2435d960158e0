"""The integer softmax's arithmetic blocks: a base-2 exponential and a serial reciprocal."""

import math
import operator

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out


def exp2_table(frac_bits, exp_bits):
    """T[f] = round(2**(exp_bits - f / 2**frac_bits)): 2**-(f / 2**frac_bits) with exp_bits
    fraction bits, for every fraction f of the exponent."""
    return [math.floor(2.0 ** (exp_bits - f / (1 << frac_bits)) + 0.5) for f in range(1 << frac_bits)]


class Exp2(wiring.Component):
    """e = 2**(-z / 2**frac_bits) as an integer with `exp_bits` fraction bits, combinationally.

    The integer part of z is a right shift; the fraction indexes a table of 2**frac_bits entries.
    Exponents of (exp_bits + 1) or more give 0: every table entry shifted that far is 0.

    Members
    -------
    z : In(unsigned(z_width))       fixed point, frac_bits fraction bits, non-negative
    e : Out(unsigned(exp_bits + 1)) in [0, 2**exp_bits]
    """

    def __init__(self, *, z_width, frac_bits, exp_bits):
        self.z_width = operator.index(z_width)
        self.frac_bits = operator.index(frac_bits)
        self.exp_bits = operator.index(exp_bits)
        if self.frac_bits < 1 or self.exp_bits < 1:
            raise ValueError(f"frac_bits and exp_bits must be at least 1, not {frac_bits}, {exp_bits}")
        if self.z_width <= self.frac_bits:
            raise ValueError(f"z_width {z_width} must exceed frac_bits {frac_bits}")
        self.table = exp2_table(self.frac_bits, self.exp_bits)
        super().__init__({"z": In(unsigned(self.z_width)), "e": Out(unsigned(self.exp_bits + 1))})

    def elaborate(self, platform):
        m = Module()
        F, E = self.frac_bits, self.exp_bits
        # A ROM read combinationally: Yosys turns it into a case statement or LUTs.
        m.submodules.table = table = memory.Memory(shape=unsigned(E + 1), depth=1 << F, init=self.table)
        lookup = table.read_port(domain="comb")
        whole = self.z[F:]
        shift_width = E.bit_length()
        m.d.comb += lookup.addr.eq(self.z[:F])
        with m.If(whole > E):
            m.d.comb += self.e.eq(0)
        with m.Else():
            m.d.comb += self.e.eq(lookup.data >> whole[:shift_width])
        return m


class SerialReciprocal(wiring.Component):
    """quotient = 2**numerator_log2 // divisor by restoring division, `bits_per_clock` quotient
    bits per clock (most significant first).

    Pulse `start`, then raise `step` for `latency` clocks with the divisor held steady: the clock
    after the last step, `quotient` holds the result. The divisor must exceed
    2**(numerator_log2 - quotient_width), so that the quotient fits. The divisor is not latched, so
    `start` may come before the divisor is known (the attention unit starts while summing).

    When bits_per_clock does not divide quotient_width, the divider computes `pad` more bits,
    2**(numerator_log2 + pad) // divisor, and drops them: floor(floor(x / 2**pad)) = floor(x) for the
    same quotient.

    Members
    -------
    start    : In(1)  restart from the remainder 2**(numerator_log2 - quotient_width)
    step     : In(1)  compute the next bits_per_clock quotient bits
    divisor  : In(unsigned(divisor_width)), steady while stepping
    quotient : Out(unsigned(quotient_width))
    """

    def __init__(self, *, numerator_log2, divisor_width, quotient_width, bits_per_clock=1):
        self.numerator_log2 = operator.index(numerator_log2)
        self.divisor_width = operator.index(divisor_width)
        self.quotient_width = operator.index(quotient_width)
        self.bits_per_clock = operator.index(bits_per_clock)
        if self.bits_per_clock < 1:
            raise ValueError(f"bits_per_clock must be at least 1, not {bits_per_clock}")
        if not 0 <= self.numerator_log2 - self.quotient_width < self.divisor_width:
            raise ValueError("quotient_width must be at most numerator_log2 and leave a remainder "
                             "narrower than the divisor")
        super().__init__({
            "start": In(1),
            "step": In(1),
            "divisor": In(unsigned(self.divisor_width)),
            "quotient": Out(unsigned(self.quotient_width)),
        })

    @property
    def latency(self):
        """Steps from start to the finished quotient."""
        return -(-self.quotient_width // self.bits_per_clock)

    def elaborate(self, platform):
        m = Module()
        pad = self.latency * self.bits_per_clock - self.quotient_width
        divisor = self.divisor
        remainder = Signal(self.divisor_width + 1)
        quotient = Signal(self.quotient_width + pad)
        # bits_per_clock restoring steps chained combinationally.
        r, q = remainder, quotient
        for i in range(self.bits_per_clock):
            doubled = Signal(self.divisor_width + 2, name=f"doubled_{i}")
            fits = Signal(name=f"fits_{i}")
            next_r = Signal(self.divisor_width + 1, name=f"remainder_{i}")
            next_q = Signal(len(quotient), name=f"quotient_{i}")
            m.d.comb += [
                doubled.eq(r << 1),
                fits.eq(doubled >= divisor),
                next_r.eq(Mux(fits, doubled - divisor, doubled)),
                next_q.eq((q << 1) | fits),
            ]
            r, q = next_r, next_q
        with m.If(self.start):
            m.d.sync += [
                remainder.eq(1 << (self.numerator_log2 - self.quotient_width)),
                quotient.eq(0),
            ]
        with m.Elif(self.step):
            m.d.sync += [remainder.eq(r), quotient.eq(q)]
        m.d.comb += self.quotient.eq(quotient[pad:])
        return m
