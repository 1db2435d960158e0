"""The model accelerator's program (spec/model.py), compiled from a packed layer graph.

What the generator writes into the accelerator's memories:
  weights   every tile's R weight beats, layer by layer, row block by row block, group block by
            group block (the array's stream order, software/packing/beats.py).
  table     per row block of every layer, per row r: whether the row is real, its bias, its
            rounding right shift (a pre-shift and a rounding bit) or left shift, and where its output goes -- the word (group block)
            and the lane of the next layer's input vector (the lane is r + rows * lane_class).
  loader    per pixel: the word and lane of the first layer's input vector it goes to.

The activation layout. Layer L's input vector for group block gb is one word of C * alpha lanes:
group g = gb * C + p occupies lanes p * alpha .. p * alpha + alpha - 1, and each of its columns
sits in one of those slots (the cell's select names the slot). A result beat of layer L - 1 holds
R outputs (one row block) and is written in one clock, so its R outputs must go to R different
lanes: row r writes only lanes congruent to r modulo R. The compiler arranges that by choosing
each column's slot inside its group (balancing the lane classes) and by ordering the rows of
layer L - 1 so that row r of every row block is an output whose lane has class r. Rows whose
output no group uses fill the gaps; a class with more outputs than others adds padding rows (a
row block of zero weights whose outputs are not written). Neither changes a result: the rows are
the same dot products in another order.

`execute` runs a program on integers the way the hardware does -- memory words, lanes, tables --
without the hardware, so a compiler bug shows up against the golden model before any simulation.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from software.packing.beats import pack_fields, weight_beat
from spec import ArrayConfig
from spec.array import MAX_ACC_WIDTH
from spec.checks import signed_width_for
from spec.model import ModelConfig


class ProgramError(ValueError):
    """A packed model the accelerator's sequencer cannot run. One line, naming the node."""


CHAIN_OPS = ("flatten", "reshape")      # shape-only nodes on a flat vector: nothing to do


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """One matrix of the chain, as the accelerator runs it."""

    name: str
    weights: np.ndarray     # (row_blocks * R) x G packed weights, rows in the accelerator's order
    selects: np.ndarray     # same shape: the slot (0..alpha-1) each weight reads in its group
    rows: list              # (row_blocks * R) original output index per row, None = padding
    bias: np.ndarray        # (F,) by original output
    shift: np.ndarray       # (F,)
    logits: bool
    in_slots: dict          # input column -> (word, lane) of this layer's input vector


@dataclasses.dataclass(frozen=True)
class Program:
    config: ModelConfig
    layers: list            # LayerPlan
    weight_beats: list      # ints, stream order
    table: list             # ints, one per row block of every layer (R entries each)
    loader: list            # ints, one per pixel: valid, word, lane



def pack_entry(fields, values):
    """One table entry: `values` ({name: int}, missing ones 0) packed by `fields` ((name, width), lowest first)."""
    names = {name for name, _ in fields}
    if lost := [name for name, value in values.items() if value and name not in names]:
        raise ProgramError(f"table fields {', '.join(lost)} are not in the entry but not 0")
    word, lsb = 0, 0
    for name, width in fields:
        value = int(values.get(name, 0))
        if not -(1 << width) < value < (1 << width):
            raise ProgramError(f"table field {name} = {value} does not fit {width} bits")
        word |= (value & ((1 << width) - 1)) << lsb
        lsb += width
    return word


def entry_width(fields):
    return sum(width for _, width in fields)


# ----------------------------------------------------------------------------------------------
# The chain of matrices


def chain_of(model):
    """The matmul nodes of a packed graph model, checked to be a chain the sequencer runs."""
    if getattr(model, "term_budget", None) is not None:
        raise ProgramError("term-quantized models do not run on the model accelerator yet (its array is int8)")
    if not hasattr(model, "nodes"):
        raise ProgramError("the model accelerator runs layer-graph models (packed model format 3); "
                           "write it again with python -m software compress")
    nodes = list(model.nodes)
    if nodes[0].signed:
        raise ProgramError(f"input '{nodes[0].name}' is signed: the accelerator's pixels are unsigned")
    chain, previous = [], nodes[0].name
    for node in nodes[1:]:
        where = f"node '{node.name}' ({node.op}{' ' + node.attrs.get('kind', '') if node.op == 'matmul' else ''})"
        if tuple(node.inputs) != (previous,):
            raise ProgramError(f"{where} takes {', '.join(node.inputs)}: the accelerator's sequencer runs a chain "
                               "of layers, each reading the one before")
        if node.op in CHAIN_OPS:
            previous = node.name
            continue
        if node.op != "matmul" or node.attrs.get("kind") != "linear":
            raise ProgramError(f"{where} cannot run on the accelerator's sequencer: it runs chains of Linear "
                               "layers (ReLU fused) ending in logits; convolutions, adds, pools and host ops "
                               "need python -m sim.model or the board's layer-by-layer path")
        if node.attrs.get("split") or len(node.parts) != 1:
            raise ProgramError(f"{where} has a signed or grouped input, which the accelerator does not run")
        if not node.logits and (node.signed or node.attrs.get("lo") is not None or node.attrs.get("hi") is not None):
            raise ProgramError(f"{where} ends in a clamp other than ReLU, which the accelerator does not run")
        chain.append(node)
        previous = node.name
    if not chain or not chain[-1].logits or any(n.logits for n in chain[:-1]) or previous != model.output:
        raise ProgramError("the accelerator needs the graph's output to be the logits of its last Linear layer")
    if int(np.prod(model.input_shape)) != chain[0].parts[0].in_features:
        raise ProgramError(f"input shape {tuple(model.input_shape)} does not flatten to the first layer's "
                           f"{chain[0].parts[0].in_features} inputs")
    return chain


# ----------------------------------------------------------------------------------------------
# Layout and row order


def _slot_layout(groups, cols, alpha, rows):
    """column -> (word, lane, slot) for a layer's input: each group's columns in the slots whose
    lane classes (lane mod rows) are least used so far."""
    load = np.zeros(rows, dtype=np.int64)
    where = {}
    for g, columns in enumerate(groups):
        word, position = divmod(g, cols)
        free = list(range(alpha))
        for column in columns:
            slot = min(free, key=lambda s: (load[(position * alpha + s) % rows], s))
            free.remove(slot)
            lane = position * alpha + slot
            load[lane % rows] += 1
            where[int(column)] = (word, lane, slot)
    return where


def _row_order(out_features, consumer_layout, rows):
    """Rows of a layer in row blocks: row r of each block an output whose next-layer lane has
    class r (None = padding). Outputs no group reads fill the gaps."""
    by_class = [[] for _ in range(rows)]
    unused = []
    for f in range(out_features):
        if f in consumer_layout:
            by_class[consumer_layout[f][1] % rows].append(f)
        else:
            unused.append(f)
    blocks = max(math.ceil(out_features / rows), max(len(c) for c in by_class))
    order = []
    for rb in range(blocks):
        for r in range(rows):
            order.append(by_class[r][rb] if rb < len(by_class[r]) else (unused.pop() if unused else None))
    assert not unused and sorted(f for f in order if f is not None) == list(range(out_features))
    return order


# ----------------------------------------------------------------------------------------------


def compile_program(model, model_sha256, *, rows=None, cols=None, alpha=None, batch=16, multiplier="pipelined",
                    weights_loaded=False):
    """The Program of a packed graph model (software.packfile.load) on an accelerator whose array is
    the model's own unless rows / cols / alpha say otherwise (`weights_loaded`: see spec/model.py)."""
    chain = chain_of(model)
    array = model.config
    rows = array.rows if rows is None else rows
    cols = (array.cols if rows is None else rows) if cols is None else cols
    alpha = array.alpha if alpha is None else alpha
    packings = [node.parts[0].packing for node in chain]
    widest = max(len(g) for p in packings for g in p.groups)
    if alpha < widest:
        raise ProgramError(f"the model combines up to {widest} columns per group; an array with alpha {alpha} "
                           "cannot run it")
    if rows > cols * alpha:
        raise ProgramError(f"rows ({rows}) must be at most cols * alpha ({cols * alpha})")

    layouts = [_slot_layout(p.groups, cols, alpha, rows) for p in packings]
    orders = [_row_order(p.packed.shape[0], layouts[i + 1], rows) if i + 1 < len(chain)
              else list(range(p.packed.shape[0])) + [None] * (-p.packed.shape[0] % rows)
              for i, p in enumerate(packings)]
    logit_shift = int(chain[-1].arrays["shift"].max(initial=0))
    biases = np.concatenate([np.asarray(node.arrays["bias"], np.int64) for node in chain])
    bias_width = signed_width_for(int(biases.min(initial=0)), int(biases.max(initial=0)))
    hidden = np.concatenate([np.asarray(node.arrays["shift"], np.int64) for node in chain[:-1]] + [np.zeros(0, np.int64)])
    largest_pre_shift = int(np.maximum(hidden - 1, 0).max(initial=0))
    largest_left = max(int(np.maximum(-hidden, 0).max(initial=0)), logit_shift)
    # The accumulator holds the worst case of every row's sum (pixels and activations unsigned,
    # below 2**act_width): no sum wraps, as none does in the golden model's wider accumulator.
    top = (1 << array.act_width) - 1
    lo = min(int(np.minimum(p.packed, 0).sum(axis=1).min(initial=0)) * top for p in packings)
    hi = max(int(np.maximum(p.packed, 0).sum(axis=1).max(initial=0)) * top for p in packings)
    tile_row = ArrayConfig(rows=rows, cols=cols, alpha=alpha, act_width=array.act_width, act_signed=False,
                           weight_width=array.weight_width, acc_width=MAX_ACC_WIDTH).min_acc_width
    acc_width = min(array.acc_width, max(signed_width_for(lo, hi), tile_row))
    config = ModelConfig(
        rows=rows, cols=cols, alpha=alpha, in_features=chain[0].parts[0].in_features,
        layers=tuple((p.packed.shape[0], len(p.groups), len(orders[i]) // rows) for i, p in enumerate(packings)),
        model_sha256=model_sha256, batch=batch, logit_shift=logit_shift, bias_width=max(bias_width, 2),
        shift_width=max(largest_pre_shift.bit_length(), 1), left_width=largest_left.bit_length(),
        multiplier=multiplier, weights_loaded=weights_loaded,
        act_width=array.act_width, weight_width=array.weight_width, acc_width=acc_width)

    plans = []
    for i, (node, p) in enumerate(zip(chain, packings)):
        G = len(p.groups)
        gb = config.group_blocks(i)
        slot_of = np.zeros((p.packed.shape[0], G), dtype=np.int64)
        for g, columns in enumerate(p.groups):
            slots = np.array([layouts[i][int(c)][2] for c in columns])
            slot_of[:, g] = slots[p.select[:, g]]
        weights = np.zeros((len(orders[i]), gb * cols), dtype=np.int64)
        selects = np.zeros_like(weights)
        for position, f in enumerate(orders[i]):
            if f is not None:
                weights[position, :G] = p.packed[f]
                selects[position, :G] = np.where(p.packed[f] != 0, slot_of[f], 0)
        plans.append(LayerPlan(name=node.name, weights=weights, selects=selects, rows=orders[i],
                               bias=np.asarray(node.arrays["bias"], np.int64),
                               shift=np.asarray(node.arrays["shift"], np.int64), logits=node.logits,
                               in_slots={c: w[:2] for c, w in layouts[i].items()}))

    acfg = config.array
    beats = []
    for i, plan in enumerate(plans):
        for rb in range(config.row_blocks(i)):
            for gb in range(config.group_blocks(i)):
                block = slice(gb * cols, (gb + 1) * cols)
                for r in range(rows):
                    beats.append(weight_beat(acfg, plan.weights[rb * rows + r, block], plan.selects[rb * rows + r, block]))

    fields = config.table_fields
    table = []
    for i, plan in enumerate(plans):
        consumer = plans[i + 1].in_slots if i + 1 < len(plans) else {}
        for rb in range(config.row_blocks(i)):
            entries = []
            for r in range(rows):
                f = plan.rows[rb * rows + r]
                if f is None:
                    entries.append(0)
                    continue
                shift = int(plan.shift[f])
                # A right shift by s > 0 is (total >> (s - 1) + 1) >> 1: a pre-shift and a rounding bit.
                values = {"bias": int(plan.bias[f]), "pre_shift": max(shift - 1, 0), "round": int(shift > 0),
                          "left": max(-shift, 0)}
                if plan.logits:
                    values.update(valid=1, pre_shift=0, round=0, left=shift)
                elif f in consumer:
                    word, lane = consumer[f]
                    if lane % rows != r:
                        raise AssertionError("row order broke the lane classes")
                    values.update(valid=1, word=word, lane_class=lane // rows)
                entries.append(pack_entry(fields, values))
            table.append(pack_fields(entries, entry_width(fields)))

    lfields = config.loader_fields
    loader = []
    for k in range(config.in_features):
        if k in plans[0].in_slots:
            word, lane = plans[0].in_slots[k]
            loader.append(pack_entry(lfields, {"valid": 1, "word": word, "lane": lane}))
        else:
            loader.append(0)
    return Program(config=config, layers=plans, weight_beats=beats, table=table, loader=loader)


# ----------------------------------------------------------------------------------------------
# Running a program without the hardware


def _round_shift(total, right, left):
    half = (1 << (right - 1)) if right > 0 else 0
    return ((total + half) >> right) << left


def execute(program, x_int):
    """Logits (n x out_features) of integer inputs, computed through the program's layout: memory
    words and lanes, permuted rows, slots and the tables' shifts, as the accelerator does."""
    cfg = program.config
    C, A = cfg.cols, cfg.alpha
    top = (1 << cfg.act_width) - 1
    x_int = np.asarray(x_int, dtype=np.int64).reshape(len(x_int), -1)
    words_in = np.zeros((len(x_int), cfg.group_blocks(0), cfg.lanes), dtype=np.int64)
    for k, (word, lane) in program.layers[0].in_slots.items():
        words_in[:, word, lane] = x_int[:, k]
    mask = (1 << cfg.acc_width) - 1
    for i, plan in enumerate(program.layers):
        gb = cfg.group_blocks(i)
        # The array: cell (r, c) multiplies its weight by slot select of group c's alpha activations.
        acts = words_in.reshape(len(x_int), gb * C, A)                 # n x groups x alpha
        picked = np.take_along_axis(acts[:, None, :, :], plan.selects[None, :, :, None], axis=3)[..., 0]
        acc = (picked * plan.weights[None]).sum(axis=2)                 # n x rows
        acc = ((acc & mask) ^ (1 << (cfg.acc_width - 1))) - (1 << (cfg.acc_width - 1))
        if plan.logits:
            out = np.zeros((len(x_int), cfg.out_features), dtype=np.int64)
            for position, f in enumerate(plan.rows):
                if f is not None:
                    out[:, f] = (acc[:, position] + plan.bias[f]) << int(plan.shift[f])
            return out
        nxt = program.layers[i + 1]
        words_out = np.zeros((len(x_int), cfg.group_blocks(i + 1), cfg.lanes), dtype=np.int64)
        for position, f in enumerate(plan.rows):
            if f is None or f not in nxt.in_slots:
                continue
            shift = int(plan.shift[f])
            y = _round_shift(acc[:, position] + plan.bias[f], max(shift, 0), max(-shift, 0))
            word, lane = nxt.in_slots[f]
            words_out[:, word, lane] = np.clip(y, 0, top)
        words_in = words_out
    raise AssertionError("unreachable: the chain ends in logits")
