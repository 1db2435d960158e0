"""The term-quantization multiplier unit (`python -m gen --unit tq`): its golden model, cycle
model and payload packing, for a spec.tq.TQConfig. Written from DESIGN.md §3 and the arithmetic,
cycles and payloads described in spec/tq.py, never from hdl/.
"""

from software.packing import beats


# ---------------------------------------------------------------------------------------------
# Golden and cycle model

def _hese_terms(value, width):
    from software.frontend.termquant import hese_terms   # torch is only loaded when values are encoded
    return hese_terms(value, width)


def _check_activation(config, x):
    lo, hi = config.act_range
    if not lo <= x <= hi:
        raise ValueError(f"activation {x} outside the {config.width}-bit range [{lo}, {hi}]")


def activation_terms(config, x):
    """The (sign, exponent) terms the unit keeps of activation `x`, largest first."""
    _check_activation(config, x)
    return _hese_terms(x, config.width)[:config.data_terms]


def weight_terms_of(config, w, budget=None):
    """The front-end's encoding of integer weight `w`: its first `budget` HESE terms
    (default: weight_terms)."""
    lo, hi = config.weight_range
    if not lo <= w <= hi:
        raise ValueError(f"weight {w} outside the {config.width}-bit range [{lo}, {hi}]")
    return _hese_terms(w, config.width)[:config.weight_terms if budget is None else budget]


def terms_value(terms):
    return sum(sign << exponent for sign, exponent in terms)


def product(config, weight_terms, x):
    """The unit's product: sum of the weight's terms x the truncated activation."""
    return terms_value(weight_terms) * terms_value(activation_terms(config, x))


def term_pairs(config, weight_terms, x):
    return len(weight_terms) * len(activation_terms(config, x))


def work_cycles(config, weight_terms, x):
    """Clocks the unit works on one product."""
    if config.form == "parallel":
        return 1
    return max(1, term_pairs(config, weight_terms, x))


def stream_cycles(config, operands):
    """Clocks from the first operand handshake to the last product handshake, inclusive, for
    (weight terms, activation) pairs streamed without stalls."""
    if not operands:
        return 0
    return sum(work_cycles(config, w, x) for w, x in operands) + config.latency


# ---------------------------------------------------------------------------------------------
# Payloads

def operand_beat(config, weight_terms, x):
    _check_activation(config, x)
    if len(weight_terms) > config.weight_terms:
        raise ValueError(f"{len(weight_terms)} weight terms do not fit {config.weight_terms} slots")
    for _, exponent in weight_terms:
        if not 0 <= exponent <= config.weight_max_exponent:
            raise ValueError(f"weight term exponent {exponent} outside 0..{config.weight_max_exponent}")
    signs = [s for s, _ in weight_terms]
    exponents = [e for _, e in weight_terms]
    word = beats.pack_terms(signs, exponents, config.weight_terms, config.weight_term_width)
    weight_bits = config.weight_terms * config.weight_term_width
    return word | ((x & ((1 << config.width) - 1)) << weight_bits)


def product_value(config, word):
    return beats.unpack_fields(int(word), config.product_width, 1, signed=True)[0]


def product_word(config, value):
    return beats.pack_fields([value], config.product_width)
