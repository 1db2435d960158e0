"""Bit packing of the array's stream payloads, as documented in the manifest.

Fields are packed least significant bit first, in the order listed; arrays put element 0 lowest.
  weights beat     : weights[C] (weight_width each), then selects[C] (select_width each; absent if
                     alpha = 1)
  activations beat : data[C * alpha] (act_width each), then last, clear, emit (1 bit each)
  results beat     : sums[R] (acc_width each, two's complement)
This module is written from that description, not from hdl/, so a disagreement between the two
shows up in the tests rather than hiding in both.
"""

import numpy as np


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


def weight_beat(config, weights, selects):
    cols = config.cols
    word = pack_fields(weights, config.weight_width)
    if config.alpha > 1:
        word |= pack_fields(selects, config.select_width) << (cols * config.weight_width)
    return word


def weight_beat_width(config):
    return config.cols * (config.weight_width + config.select_width)


def activation_beat(config, values, *, last, clear, emit):
    data_bits = config.inputs * config.act_width
    word = pack_fields(values, config.act_width)
    return word | (int(last) << data_bits) | (int(clear) << (data_bits + 1)) | (int(emit) << (data_bits + 2))


def activation_beat_width(config):
    return config.inputs * config.act_width + 3


def result_values(config, word):
    return unpack_fields(int(word), config.acc_width, config.rows, signed=True)


def result_beat_width(config):
    return config.rows * config.acc_width


def tile_beats(config, tile):
    """(weight beats, activation beats) of one tile, in stream order."""
    weights = [weight_beat(config, tile.weights[r], tile.selects[r]) for r in range(config.rows)]
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


def manifest_ports(config):
    """Port descriptions for the manifest: names as in the generated Verilog, widths, packing."""
    def stream(name, direction, width, packing):
        return {
            "name": name, "direction": direction, "protocol": "valid/ready",
            "signals": {f"{name}__payload": width, f"{name}__valid": 1, f"{name}__ready": 1},
            "payload_width": width, "payload": packing,
        }
    C, R, A = config.cols, config.rows, config.alpha
    weights = [{"field": "weights", "count": C, "width": config.weight_width,
                "signed": config.weight_signed, "lsb": 0}]
    if A > 1:
        weights.append({"field": "selects", "count": C, "width": config.select_width,
                        "signed": False, "lsb": C * config.weight_width})
    data_bits = config.inputs * config.act_width
    acts = [
        {"field": "data", "count": C * A, "width": config.act_width, "signed": config.act_signed,
         "lsb": 0, "note": "group g's activation i is element g * alpha + i"},
        {"field": "last", "width": 1, "lsb": data_bits, "note": "last vector of the tile"},
        {"field": "clear", "width": 1, "lsb": data_bits + 1, "note": "first tile of an output block"},
        {"field": "emit", "width": 1, "lsb": data_bits + 2, "note": "last tile: emit the sums"},
    ]
    results = [{"field": "sums", "count": R, "width": config.acc_width, "signed": True, "lsb": 0}]
    return [
        {"name": "clk", "direction": "in", "width": 1},
        {"name": "rst", "direction": "in", "width": 1, "note": "synchronous, active high"},
        stream("weights", "in", weight_beat_width(config), weights),
        stream("activations", "in", activation_beat_width(config), acts),
        stream("results", "out", result_beat_width(config), results),
    ]
