"""Bit packing of the attention unit's stream payloads, as documented in the manifest.

Fields are packed least significant bit first, in the order listed; arrays put element 0 lowest.
  kv beat    : key[d] (data_width each), value[d] (data_width each), last (1)
               one K row and the V row of the same position; `last` marks the sequence's final
               row (the max_len-th row ends the sequence even without it).
  query beat : q[d] (data_width each), scale (scale_width, unsigned), shift (6, unsigned), last (1)
               `last` marks the final query against the loaded K and V: the unit then waits for
               the next sequence's kv beats.
  out beat   : out[d] (out_width each, signed), kept (kept_width, unsigned): positions multiplied.
Written from that description, not from hdl/.

Stream order: n kv beats (last on the n-th), then queries, each answered by one out beat before
the next query is taken; after a query with `last`, the next sequence's kv beats.
"""

from spec.attention import SHIFT_WIDTH

from software.packing.beats import pack_fields, unpack_fields


def kv_beat(config, key, value, *, last):
    d, w = config.head_dim, config.data_width
    return pack_fields(key, w) | (pack_fields(value, w) << (d * w)) | (int(last) << (2 * d * w))


def query_beat(config, q, scale, shift, *, last):
    d, w = config.head_dim, config.data_width
    if not 0 <= int(scale) < (1 << config.scale_width) or not 0 <= int(shift) < (1 << SHIFT_WIDTH):
        raise ValueError("scale or shift out of range")
    word = pack_fields(q, w)
    word |= int(scale) << (d * w)
    word |= int(shift) << (d * w + config.scale_width)
    return word | (int(last) << (d * w + config.scale_width + SHIFT_WIDTH))


def out_values(config, word):
    """(outputs, kept) of an out beat."""
    d, ow = config.head_dim, config.out_width
    out = unpack_fields(int(word), ow, d, signed=True)
    kept = (int(word) >> (d * ow)) & ((1 << config.kept_width) - 1)
    return out, kept


def out_beat(config, out, kept):
    return pack_fields(out, config.out_width) | (int(kept) << (config.head_dim * config.out_width))


def head_beats(config, k, v, q, mul, shift):
    """kv beats and query beats of one head (its sequence K, V and its m queries)."""
    n, m = len(k), len(q)
    kv = [kv_beat(config, k[j], v[j], last=j == n - 1) for j in range(n)]
    queries = [query_beat(config, q[i], mul[i], shift[i], last=i == m - 1) for i in range(m)]
    return kv, queries
