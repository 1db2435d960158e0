"""Formats of HESE terms (DESIGN.md §3): a `width`-bit integer as signed powers of two.

hdl/hese.py lays its term signals out with these widths, software/frontend/termquant.py encodes values into
terms, and the manifests describe them; all three read them from here.
"""

MAX_TERM_WIDTH = 32


def term_max_exponent(width, signed):
    """Largest HESE exponent of a `width`-bit value, also after truncation to a term budget.

    A signed value has |v| <= 2**(width-1): exponents up to width-1 (127 = +128 - 1, -128 = -128).
    An unsigned one has v < 2**width: up to width (255 = +256 - 1). Truncation keeps a prefix of the
    terms, so a truncated value's magnitude is at most 2**term_max_exponent (127 -> +128).
    """
    return width - 1 if signed else width


def term_value_max_terms(width, signed):
    """Most HESE terms of any `width`-bit value: floor(2 * (bits + 1) / 3) for magnitudes below
    2**bits, bits = width - 1 when signed (-2**(width-1) itself has one term)."""
    bits = width - 1 if signed else width
    return max(1, 2 * (bits + 1) // 3)


def exponent_width(max_exponent):
    """Bits of a term's exponent field."""
    return max(1, max_exponent.bit_length())


def term_width(width, signed):
    """Bits of one term in hardware: valid, sign (1 = negative), exponent."""
    return 2 + exponent_width(term_max_exponent(width, signed))


def truncated_range(width, signed):
    """The integers a term-quantized `width`-bit value can take: magnitudes up to 2**max exponent."""
    top = 1 << term_max_exponent(width, signed)
    return (-top if signed else 0), top


def term_product_width(weight_max_exponent, data_max_exponent):
    """Signed bits of a product of two values of magnitude up to 2**max_exponent each."""
    return weight_max_exponent + data_max_exponent + 2
