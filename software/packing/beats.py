"""Bit packing of the array's stream payloads, as the manifest describes them (spec/array.py).

Fields are packed least significant bit first, in the order listed; arrays put element 0 lowest.
  weights beat     : weights[C] (weight_width each), then selects[C] (select_width each; absent if
                     alpha = 1). With mac "tq" each weight is a term list instead of an integer:
                     terms[weight_terms], largest first, each term = valid (bit 0), sign (bit 1,
                     1 = negative), exponent (bit_length of the largest exponent); unused slots 0.
  activations beat : data[C * alpha] (act_width each), then last, clear, emit (1 bit each)
  results beat     : sums[R] (acc_width each, two's complement)
This module is written from that description, not from hdl/, so a disagreement between the two
shows up in the tests rather than hiding in both.
"""


def pack_fields(values, width):
    """Pack integers (two's complement for negatives) into one integer, element 0 lowest."""
    word, mask = 0, (1 << width) - 1
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * width)
    return word


def unpack_fields(word, width, count, signed):
    mask, half = (1 << width) - 1, 1 << (width - 1)
    out = []
    for i in range(count):
        v = (word >> (i * width)) & mask
        if signed and v >= half:
            v -= 1 << width
        out.append(v)
    return out


def pack_term(sign, exponent):
    """One term as (valid, sign, exponent) bits, valid lowest; sign 0 means an unused slot."""
    if sign == 0:
        return 0
    return 1 | (int(sign < 0) << 1) | (int(exponent) << 2)


def pack_terms(signs, exponents, slots, term_width):
    """A term list of `slots` terms (largest first; sign -1/0/+1, 0 = unused) into one integer."""
    signs, exponents = list(signs), list(exponents)
    if len(signs) > slots and any(signs[slots:]):
        raise ValueError(f"{sum(1 for s in signs if s)} terms do not fit {slots} slots")
    exp_width = term_width - 2
    word = 0
    for t, (sign, exponent) in enumerate(zip(signs[:slots], exponents[:slots])):
        if sign and not 0 <= exponent < (1 << exp_width):
            raise ValueError(f"term exponent {exponent} does not fit {exp_width} bits")
        word |= pack_term(sign, exponent) << (t * term_width)
    return word


def weight_beat(config, weights, selects, terms=None):
    """One row's weight beat. mac "tq": `terms` = (signs, exponents), each C x T, largest first."""
    cols = config.cols
    if config.mac_style.uses_terms:
        if terms is None:
            raise ValueError("a term-quantized array needs the weights' terms")
        signs, exponents = terms
        word = 0
        for c in range(cols):
            word |= pack_terms(signs[c], exponents[c], config.weight_terms,
                               config.weight_term_width) << (c * config.weight_field_width)
    else:
        word = pack_fields(weights, config.weight_width)
    if config.alpha > 1:
        word |= pack_fields(selects, config.select_width) << (cols * config.weight_field_width)
    return word


def activation_beat(config, values, *, last, clear, emit):
    data_bits = config.inputs * config.act_width
    word = pack_fields(values, config.act_width)
    return word | (int(last) << data_bits) | (int(clear) << (data_bits + 1)) | (int(emit) << (data_bits + 2))


def result_values(config, word):
    return unpack_fields(int(word), config.acc_width, config.rows, signed=True)


def tile_beats(config, tile):
    """(weight beats, activation beats) of one tile, in stream order."""
    terms = [None] * config.rows
    if config.mac_style.uses_terms:
        terms = [(tile.term_signs[r], tile.term_exponents[r]) for r in range(config.rows)]
    weights = [weight_beat(config, tile.weights[r], tile.selects[r], terms[r]) for r in range(config.rows)]
    n = tile.batch
    acts = [activation_beat(config, tile.activations[i], last=i == n - 1,
                            clear=tile.clear, emit=tile.emit) for i in range(n)]
    return weights, acts


def schedule_beats(schedule):
    """All weight beats and all activation beats of a schedule, and the number of result beats."""
    weights, acts, results = [], [], 0
    for tile in schedule.tiles:
        w, a = tile_beats(schedule.config, tile)
        weights += w
        acts += a
        results += tile.batch if tile.emit else 0
    return weights, acts, results
