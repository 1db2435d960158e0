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

from .attention_config import SHIFT_WIDTH
from .beats import pack_fields, unpack_fields


def kv_beat(config, key, value, *, last):
    d, w = config.head_dim, config.data_width
    return pack_fields(key, w) | (pack_fields(value, w) << (d * w)) | (int(last) << (2 * d * w))


def kv_beat_width(config):
    return 2 * config.head_dim * config.data_width + 1


def query_beat(config, q, scale, shift, *, last):
    d, w = config.head_dim, config.data_width
    if not 0 <= int(scale) < (1 << config.scale_width) or not 0 <= int(shift) < (1 << SHIFT_WIDTH):
        raise ValueError("scale or shift out of range")
    word = pack_fields(q, w)
    word |= int(scale) << (d * w)
    word |= int(shift) << (d * w + config.scale_width)
    return word | (int(last) << (d * w + config.scale_width + SHIFT_WIDTH))


def query_beat_width(config):
    return config.head_dim * config.data_width + config.scale_width + SHIFT_WIDTH + 1


def out_values(config, word):
    """(outputs, kept) of an out beat."""
    d, ow = config.head_dim, config.out_width
    out = unpack_fields(int(word), ow, d, signed=True)
    kept = (int(word) >> (d * ow)) & ((1 << config.kept_width) - 1)
    return out, kept


def out_beat(config, out, kept):
    return pack_fields(out, config.out_width) | (int(kept) << (config.head_dim * config.out_width))


def out_beat_width(config):
    return config.head_dim * config.out_width + config.kept_width


def head_beats(config, k, v, q, mul, shift):
    """kv beats and query beats of one head (its sequence K, V and its m queries)."""
    n, m = len(k), len(q)
    kv = [kv_beat(config, k[j], v[j], last=j == n - 1) for j in range(n)]
    queries = [query_beat(config, q[i], mul[i], shift[i], last=i == m - 1) for i in range(m)]
    return kv, queries


def manifest_ports(config):
    """Port descriptions for the manifest: names as in the generated Verilog, widths, packing."""
    def stream(name, direction, width, packing):
        return {
            "name": name, "direction": direction, "protocol": "valid/ready",
            "signals": {f"{name}__payload": width, f"{name}__valid": 1, f"{name}__ready": 1},
            "payload_width": width, "payload": packing,
        }
    d, w, W = config.head_dim, config.data_width, config.scale_width
    kv = [
        {"field": "key", "count": d, "width": w, "signed": True, "lsb": 0},
        {"field": "value", "count": d, "width": w, "signed": True, "lsb": d * w},
        {"field": "last", "width": 1, "lsb": 2 * d * w, "note": "last row of the sequence"},
    ]
    query = [
        {"field": "q", "count": d, "width": w, "signed": True, "lsb": 0},
        {"field": "scale", "width": W, "signed": False, "lsb": d * w,
         "note": "score multiplier m: z = ((max score - score) * m) >> shift"},
        {"field": "shift", "width": SHIFT_WIDTH, "signed": False, "lsb": d * w + W},
        {"field": "last", "width": 1, "lsb": d * w + W + SHIFT_WIDTH,
         "note": "last query against this K, V: then load the next sequence"},
    ]
    out = [
        {"field": "out", "count": d, "width": config.out_width, "signed": True, "lsb": 0},
        {"field": "kept", "width": config.kept_width, "signed": False, "lsb": d * config.out_width,
         "note": "positions that survived pruning and were multiplied by V"},
    ]
    return [
        {"name": "clk", "direction": "in", "width": 1},
        {"name": "rst", "direction": "in", "width": 1, "note": "synchronous, active high"},
        stream("kv", "in", kv_beat_width(config), kv),
        stream("query", "in", query_beat_width(config), query),
        stream("out", "out", out_beat_width(config), out),
    ]
