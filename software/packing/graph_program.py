"""The model accelerator's program for a layer graph with convolutions, residual adds and global
average pooling (DESIGN.md §10; a chain of Linear layers is compiled by software/packing/program.py).

Steps. Every matrix the array multiplies is a step, in graph order: a Linear or Conv2d node, or a
global average pool (adaptive_avgpool to 1 x 1 over P = 2**k positions), which runs as a matrix of
ones over each channel's positions with a rounding right shift by k -- the integer model's rounded
mean, exactly. A step reads its batch's input vectors from the activation memory in its own layout
and post-processes each result beat into the layouts of the steps that read its output, into the
residual buffer, or into the logits.

The layout of a step's input (im2col in memory). A convolution's input vector for output position p
holds column (c, t): input channel c at kernel tap t, which the packing put into a group, i.e. a word
(group block) and a lane. A Linear over a flattened C x H x W tensor is the convolution whose kernel
is the whole map, so one layout serves both. The vector of (image i, position p) is `words`
consecutive words at region + (i * positions + p) * words, which is the chain's layout with
`batch * positions` vectors, so the feed is unchanged.

Write rounds. A result beat holds the R channels of one row block at one position q of one image. For
each consumer k and tap t, row r's value goes to the word of output position p(k, t, q) -- the one
that reads input q through tap t, if any -- at the lane of column (c_r, t). The activation memory is R
memories (lane classes, lane mod R), each written once per clock, so a round writes at most one value
per class. A (k, t) whose R columns sit in R different classes is one round; the compiler picks each
column's slot in its group to make it so, and otherwise splits it into as many rounds as the most
writes aimed at one class. A round routes any row to any class (a crossbar), so rows keep the
channels' natural order, and a residual add's two operands, both in that order, meet beat by beat.
The loader writes each pixel the same way, one round per (consumer, tap).

Zero padding. For tap t, the words of output positions whose tap falls outside the input are read
but no value goes to them; the beats q that have no target at tap t write a 0 there instead (for
stride 1 the two sets are the two borders and have the same size). No memory is cleared, and no
word is written twice in a step.

Residual adds. An add of two matrix outputs is fused into the step computing the later operand (its
main operand, which the add alone reads): that step's value y becomes
clip(rs(y, s_main) + r, lo, hi), where r = rs(x, s_other) of the other operand was written, beat by
beat in the same order, into the residual buffer by the step that computed x (rs: the integer model's
rounding shift). The other operand may be any step's output, a fused add's included.

`execute` runs a program on integers the way the hardware will -- memory words, lanes, rounds, the
residual buffer -- and checks as it goes that no round writes a class twice, no word is written twice
in a step, and no weight reads a lane nobody wrote: a compiler bug shows up against the golden model
(software.frontend.intgraph) before any hardware exists.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import numpy as np

from software.frontend.intmodel import ConvGeometry
from software.packing.beats import weight_beat
from software.packing.colcomb import pack
from spec import ArrayConfig
from spec.array import MAX_ACC_WIDTH
from spec.checks import signed_width_for
from spec.graph_model import GraphModelConfig

from .program import ProgramError, chain_of, compile_program

SHAPE_OPS = ("flatten", "reshape")


# ----------------------------------------------------------------------------------------------
# Geometry


@dataclasses.dataclass(frozen=True)
class Geometry(ConvGeometry):
    """How a step reads a C x H x W tensor: a convolution's window (a Linear: the whole map). The
    integer model's im2col geometry (its output size and positions), with the taps and where each
    reads."""

    @classmethod
    def whole(cls, channels, height, width):
        return cls(channels, height, width, kernel=(height, width), stride=(1, 1), padding=(0, 0))

    @property
    def taps(self):
        return self.kernel[0] * self.kernel[1]

    @property
    def in_positions(self):
        return self.in_h * self.in_w

    def source(self, t, p):
        """The input position that output position p reads through tap t, or None (padding)."""
        (oy, ox), (dy, dx) = divmod(p, self.out_w), divmod(t, self.kernel[1])
        y = oy * self.stride[0] - self.padding[0] + dy
        x = ox * self.stride[1] - self.padding[1] + dx
        return y * self.in_w + x if 0 <= y < self.in_h and 0 <= x < self.in_w else None

    def spatial(self, where):
        """Per tap t, per input position q: (word position p or -1, whether the write is a 0).
        A q with no output position reading it takes one of the padding words instead."""
        table = []
        for t in range(self.taps):
            row = [(-1, False)] * self.in_positions
            padding = []
            for p in range(self.positions):
                q = self.source(t, p)
                if q is None:
                    padding.append(p)
                else:
                    row[q] = (p, False)
            free = [q for q in range(self.in_positions) if row[q][0] < 0]
            if len(padding) > len(free):
                raise ProgramError(f"{where}: tap {t} reads {len(padding)} padding positions but only "
                                   f"{len(free)} inputs are free to clear them")
            for p, q in zip(padding, free):
                row[q] = (p, True)
            table.append(row)
        return table


@dataclasses.dataclass(frozen=True)
class Layout:
    """A step's input vector: where each column (c * taps + t) sits, and the spatial table."""

    geometry: Geometry
    where: dict             # column -> (word, lane, slot)
    words: int              # group blocks: words per vector
    spatial: list           # [t][q] -> (p, zero)


@dataclasses.dataclass(frozen=True)
class Round:
    """One clock of writes of a beat: consumer `consumer` (a step index) at tap `tap`; `writes` are
    (row, word, lane), at most one per lane class."""

    consumer: int
    tap: int
    writes: tuple


@dataclasses.dataclass(frozen=True)
class Step:
    """One matrix on the array and its post-processing (see the module docstring)."""

    name: str
    weights: np.ndarray     # (row_blocks * R) x (words * C): row block b, row r = channel b * R + r
    selects: np.ndarray
    out_features: int
    bias: np.ndarray
    shift: np.ndarray
    bounds: tuple | None    # (lo, hi) of the requantized value; None: logits
    layout: Layout
    region: int             # first word of its input region in the activation memory
    add: dict | None = None             # fused add: shift, lo, hi, region (the residual it reads)
    residual_out: dict | None = None    # shift, region: rs(value, shift) into the residual buffer
    rounds: tuple = ()                  # per row block: Rounds of each beat
    synthetic: str = ""                 # "" or what the step stands for (a pool)

    @property
    def logits(self):
        return self.bounds is None

    @property
    def positions(self):
        return self.layout.geometry.positions


@dataclasses.dataclass(frozen=True)
class GraphProgram:
    config: GraphModelConfig
    rows: int
    cols: int
    alpha: int
    batch: int
    act_width: int
    acc_width: int
    input_shape: tuple
    steps: list
    loader_rounds: list         # per input channel: the Rounds of each of its pixels (row 0: the pixel)
    act_depth: int
    residual_depth: int

    @property
    def lanes(self):
        return self.cols * self.alpha

    def row_blocks(self, s):
        return math.ceil(self.steps[s].out_features / self.rows)

    @property
    def weight_beats(self):
        """Every tile's R weight beats: step by step, row block by row block, group block by group
        block (the array's stream order, software/packing/beats.py)."""
        acfg, R, C = self.config.array, self.rows, self.cols
        beats = []
        for s, step in enumerate(self.steps):
            for rb in range(self.row_blocks(s)):
                for gb in range(step.layout.words):
                    for r in range(R):
                        beats.append(weight_beat(acfg, step.weights[rb * R + r, gb * C:(gb + 1) * C],
                                                 step.selects[rb * R + r, gb * C:(gb + 1) * C]))
        return beats

    def summary(self):
        """One line per step: tiles, positions, rounds per beat."""
        lines = []
        for s, step in enumerate(self.steps):
            rounds = [len(r) for r in step.rounds]
            lines.append(f"{step.name}: {step.out_features} x {len(step.layout.where)} columns, "
                         f"{self.row_blocks(s)} row blocks x {step.layout.words} words, {step.positions} "
                         f"positions, rounds per beat {min(rounds, default=0)}-{max(rounds, default=0)}")
        return lines


# ----------------------------------------------------------------------------------------------
# From the graph to steps


def _rs(v, s):
    """The integer model's rounding shift: right by s > 0 rounding half up, left by -s."""
    s = int(s)
    return (v + (np.int64(1) << (s - 1))) >> s if s > 0 else v << -s


def _producer_of(model, name):
    """Skip shape-only nodes back to the node that computes a tensor."""
    node = model.node(name)
    while node.op in SHAPE_OPS:
        node = model.node(node.inputs[0])
    return node


def _shapes(model):
    """C x H x W of every computing node's output (a flat vector is F x 1 x 1)."""
    shapes = {}
    for node in model.nodes:
        if node.op == "input":
            shape = tuple(model.input_shape)
        elif node.op == "matmul":
            a = node.attrs
            features = sum(p.out_features for p in node.parts)
            shape = (features, *a["out_hw"]) if a["kind"] == "conv" else (features, 1, 1)
        elif node.op == "add":
            shape = shapes[node.inputs[0]]
        elif node.op == "adaptive_avgpool":
            shape = (shapes[node.inputs[0]][0], *node.attrs["size"])
        elif node.op in SHAPE_OPS:
            shape = shapes[node.inputs[0]]
        else:
            shape = None
        if shape is not None and len(shape) == 1:
            shape = (shape[0], 1, 1)
        if shape is not None and len(shape) != 3:
            raise ProgramError(f"node '{node.name}' ({node.op}) makes a tensor of shape {shape}: the accelerator "
                               "runs C x H x W feature maps and flat vectors")
        shapes[node.name] = shape
    return shapes


def _where(node):
    extra = f" {node.attrs.get('kind', '')}" if node.op == "matmul" else ""
    return f"node '{node.name}' ({node.op}{extra})"


def _pool_packing(channels, positions, alpha):
    """The global average pool as a packed matrix of ones: row c sums columns (c, t), t < positions;
    groups hold one tap of alpha channels (disjoint rows, nothing pruned)."""
    weight = np.zeros((channels, channels * positions), dtype=np.int64)
    for c in range(channels):
        weight[c, c * positions:(c + 1) * positions] = 1
    groups = [[c * positions + t for c in range(start, min(start + alpha, channels))]
              for t in range(positions) for start in range(0, channels, alpha)]
    return pack(weight, groups, alpha)


def is_chain(model):
    """Whether a packed model is a chain of Linear layers (the chain's accelerator runs it)."""
    try:
        chain_of(model)
    except ProgramError:
        return False
    return True


def compile_model(model, model_sha256, *, rows=None, cols=None, alpha=None, batch=16, multiplier="pipelined",
                  weights_loaded=False):
    """The accelerator program of a packed model: a chain of Linear layers runs on the chain's
    accelerator (program.compile_program), any other graph the sequencer can run on this one."""
    if not is_chain(model):
        program = compile_graph(model, model_sha256, rows=rows, cols=cols, alpha=alpha, batch=batch,
                                multiplier=multiplier)
        if weights_loaded:
            raise ProgramError("only chains of Linear layers take their weights over the link yet; this model's "
                               "accelerator keeps them in the bitstream (--weights-from bitstream)")
        return program
    return compile_program(model, model_sha256, rows=rows, cols=cols, alpha=alpha, batch=batch,
                           multiplier=multiplier, weights_loaded=weights_loaded)


def compile_graph(model, model_sha256="0" * 64, *, rows=None, cols=None, alpha=None, batch=4,
                  multiplier="pipelined"):
    """The GraphProgram of a packed layer-graph model (software.packfile.load) with digest
    `model_sha256`, on an accelerator whose array is the model's own unless rows / cols / alpha say
    otherwise."""
    array = model.config
    rows = array.rows if rows is None else rows
    cols = (array.cols if rows is None else rows) if cols is None else cols
    alpha = array.alpha if alpha is None else alpha
    if getattr(model, "term_budget", None) is not None:
        raise ProgramError("term-quantized models do not run on the model accelerator yet (its array is int8)")
    if model.nodes[0].signed:
        raise ProgramError(f"input '{model.nodes[0].name}' is signed: the accelerator's pixels are unsigned")
    top = (1 << array.act_width) - 1
    shapes = _shapes(model)
    consumers = defaultdict(list)
    for node in model.nodes[1:]:
        for name in node.inputs:
            consumers[_producer_of(model, name).name].append(node)

    # 1. Steps in graph order: what each matrix node (or pool) reads, and what becomes of its value.
    specs = []          # dicts, one per step, filled in below
    writer = {}         # tensor (node name) -> index of the step whose value it is ("" for the input)
    writer[model.nodes[0].name] = -1
    for node in model.nodes[1:]:
        where = _where(node)
        if node.op in SHAPE_OPS:
            continue
        if node.op == "matmul":
            a = node.attrs
            if a.get("split") or len(node.parts) != 1:
                raise ProgramError(f"{where} has a signed or grouped input, which the accelerator does not run")
            if a["kind"] == "conv" and tuple(a.get("dilation", (1, 1))) != (1, 1):
                raise ProgramError(f"{where} is dilated, which the accelerator does not run")
            source = _producer_of(model, node.inputs[0])
            c, h, w = shapes[source.name]
            if a["kind"] == "conv":
                geometry = Geometry(c, h, w, tuple(a["kernel"]), tuple(a["stride"]), tuple(a["padding"]))
            else:
                geometry = Geometry.whole(c, h, w)
            packing = node.parts[0].packing
            if packing.in_features != c * geometry.taps:
                raise ProgramError(f"{where} reads {packing.in_features} columns, not {c} x {geometry.taps}")
            if node.logits:
                bounds = None
            else:
                lo, hi = (-top if node.signed else 0), top
                lo = max(lo, node.attrs["lo"]) if node.attrs.get("lo") is not None else lo
                hi = min(hi, node.attrs["hi"]) if node.attrs.get("hi") is not None else hi
                bounds = (lo, hi)
            specs.append(dict(name=node.name, source=source.name, geometry=geometry, packing=packing,
                              bias=np.asarray(node.arrays["bias"], np.int64),
                              shift=np.asarray(node.arrays["shift"], np.int64), bounds=bounds, synthetic=""))
            writer[node.name] = len(specs) - 1
        elif node.op == "adaptive_avgpool":
            source = _producer_of(model, node.inputs[0])
            c, h, w = shapes[source.name]
            positions = h * w
            if tuple(node.attrs["size"]) != (1, 1) or positions & (positions - 1):
                raise ProgramError(f"{where}: the accelerator pools a whole map of 2**k positions to 1 x 1, "
                                   f"not {h} x {w} to {tuple(node.attrs['size'])}")
            geometry = Geometry.whole(c, h, w)
            specs.append(dict(name=node.name, source=source.name, geometry=geometry,
                              packing=_pool_packing(c, positions, alpha),
                              bias=np.zeros(c, np.int64), shift=np.full(c, positions.bit_length() - 1, np.int64),
                              bounds=((-top if node.signed else 0), top), synthetic="global average pool"))
            writer[node.name] = len(specs) - 1
        elif node.op == "add":
            operands = [_producer_of(model, name) for name in node.inputs]
            steps_of = [writer.get(o.name) for o in operands]
            if len(operands) != 2 or None in steps_of:
                raise ProgramError(f"{where} adds tensors the accelerator does not compute")
            main = max(range(2), key=lambda i: steps_of[i])
            other = 1 - main
            main_node, main_step = operands[main], steps_of[main]
            if main_node.op != "matmul" or writer[main_node.name] != main_step:
                raise ProgramError(f"{where}: its later operand '{main_node.name}' must be a matrix's output")
            if len(consumers[main_node.name]) != 1:
                raise ProgramError(f"{where}: its operand '{main_node.name}' is read elsewhere too, which the "
                                   "accelerator does not run (the add is fused into that matrix)")
            if steps_of[other] < 0 or steps_of[other] == main_step:
                raise ProgramError(f"{where}: its operand '{operands[other].name}' must be another matrix's output")
            shifts = [int(s) for s in node.attrs["shifts"]]
            if min(shifts) < 0:
                raise ProgramError(f"{where} shifts an operand left, which the accelerator does not run")
            lo, hi = (-top if node.signed else 0), top
            lo = max(lo, node.attrs["lo"]) if node.attrs.get("lo") is not None else lo
            hi = min(hi, node.attrs["hi"]) if node.attrs.get("hi") is not None else hi
            spec = specs[main_step]
            if spec["bounds"] is None or spec.get("add") is not None:
                raise ProgramError(f"{where} adds to logits or to another add's matrix")
            spec["add"] = dict(shift=shifts[main], lo=lo, hi=hi, producer=steps_of[other], node=node.name)
            specs[steps_of[other]].setdefault("residual_for", []).append((main_step, shifts[other], node.name))
            writer[node.name] = main_step
        elif node.op != "input":
            raise ProgramError(f"{where} cannot run on the accelerator's sequencer: it runs Linear and Conv2d "
                               "layers, residual adds and global average pooling; this needs python -m sim.model "
                               "or the board's layer-by-layer path")

    if not specs or specs[-1]["bounds"] is not None or writer.get(_producer_of(model, model.output).name) != len(specs) - 1:
        raise ProgramError("the accelerator needs the graph's output to be the logits of its last Linear layer")
    if any(spec["bounds"] is None for spec in specs[:-1]):
        raise ProgramError("only the graph's last matrix may give logits")
    if specs[-1]["geometry"].positions != 1:
        raise ProgramError("the logits must come from a Linear layer (one position per image)")
    for spec in specs:
        for main, _, name in spec.get("residual_for", []):
            if len(spec.get("residual_for")) > 1:
                raise ProgramError(f"node '{name}': the value of '{spec['name']}' is added twice, which the "
                                   "accelerator does not run")
            m = specs[main]
            if (m["geometry"].positions, len(m["bias"])) != (spec["geometry"].positions, len(spec["bias"])):
                raise ProgramError(f"node '{name}' adds tensors of different shapes")
    # Which steps read each step's value (the loader's: -1).
    readers = defaultdict(list)
    for s, spec in enumerate(specs):
        readers[writer[spec["source"]]].append(s)
    for s in range(len(specs)):
        if s < len(specs) - 1 and not readers[s] and not specs[s].get("residual_for"):
            raise ProgramError(f"node '{specs[s]['name']}': nothing the accelerator runs reads its value")
    for s, spec in enumerate(specs):
        if writer[spec["source"]] >= s:
            raise ProgramError(f"node '{spec['name']}' reads a value computed after it")

    # 2. Layouts: each column's slot, so that a beat's R writes of one tap land in R classes.
    widest = max(len(g) for spec in specs for g in spec["packing"].groups)
    if alpha < widest:
        raise ProgramError(f"the model combines up to {widest} columns per group; an array with alpha {alpha} "
                           "cannot run it")
    if rows > cols * alpha:
        raise ProgramError(f"rows ({rows}) must be at most cols * alpha ({cols * alpha})")
    layouts = []
    for s, spec in enumerate(specs):
        taps = spec["geometry"].taps
        from_loader = writer[spec["source"]] < 0
        layouts.append(_layout(spec["geometry"], spec["packing"].groups, cols, alpha, rows, taps, from_loader,
                               where=f"node '{spec['name']}'"))

    # 3. Regions of the activation memory and the residual buffer, first fit over their lifetimes.
    def lifetime(s):
        return (writer[specs[s]["source"]], s)

    sizes = [batch * layouts[s].geometry.positions * layouts[s].words for s in range(len(specs))]
    regions, act_depth = _allocate([(lifetime(s), sizes[s]) for s in range(len(specs))])
    residuals = [(s, main) for s, spec in enumerate(specs) for main, _, _ in spec.get("residual_for", [])]
    res_sizes = [math.ceil(len(specs[s]["bias"]) / rows) * batch * specs[s]["geometry"].positions
                 for s, _ in residuals]
    res_regions, residual_depth = _allocate([((s, main), size) for (s, main), size in zip(residuals, res_sizes)])
    res_region_of = {pair: region for pair, region in zip(residuals, res_regions)}

    # 4. Steps: weights in natural row order, slots from the layout, rounds per row block.
    steps = []
    for s, spec in enumerate(specs):
        p, layout = spec["packing"], layouts[s]
        F, G = p.packed.shape
        blocks = math.ceil(F / rows)
        weights = np.zeros((blocks * rows, layout.words * cols), dtype=np.int64)
        selects = np.zeros_like(weights)
        for g, columns in enumerate(p.groups):
            slots = np.array([layout.where[int(c)][2] for c in columns])
            weights[:F, g] = p.packed[:, g]
            selects[:F, g] = np.where(p.packed[:, g] != 0, slots[p.select[:, g]], 0)
        add = None
        if spec.get("add"):
            a = spec["add"]
            add = dict(shift=a["shift"], lo=a["lo"], hi=a["hi"], region=res_region_of[(a["producer"], s)])
        residual_out = None
        if spec.get("residual_for"):
            main, shift, _ = spec["residual_for"][0]
            residual_out = dict(shift=shift, region=res_region_of[(s, main)])
        rounds = tuple(_rounds(b, F, rows, [(k, layouts[k]) for k in readers[s]]) for b in range(blocks))
        steps.append(Step(name=spec["name"], weights=weights, selects=selects, out_features=F, bias=spec["bias"],
                          shift=spec["shift"], bounds=spec["bounds"], layout=layout, region=regions[s], add=add,
                          residual_out=residual_out, rounds=rounds, synthetic=spec["synthetic"]))

    loader_rounds = [_rounds(c, shapes[model.nodes[0].name][0], 1, [(k, layouts[k]) for k in readers[-1]])
                     for c in range(shapes[model.nodes[0].name][0])]
    acc_width = _accumulator_width(steps, array, rows, cols, alpha)
    biases = [int(b) for step in steps for b in step.bias]
    hidden = [int(v) for step in steps[:-1] for v in step.shift]
    logit_shift = max(0, int(steps[-1].shift.max(initial=0)))
    if int(steps[-1].shift.min(initial=0)) < 0:
        raise ProgramError("the logits shift right, which the accelerator does not run")
    pixels = batch * math.prod(model.input_shape)
    beats = max(batch * step.positions * math.ceil(step.out_features / rows) for step in steps)
    config = GraphModelConfig(
        rows=rows, cols=cols, alpha=alpha, input_shape=tuple(model.input_shape),
        steps=tuple((step.out_features, step.layout.words, step.positions, tuple(len(r) for r in step.rounds))
                    for step in steps),
        loader_rounds=tuple(len(r) for r in loader_rounds), act_depth=act_depth, residual_depth=residual_depth,
        queue_depth=max(pixels, beats) + 1, model_sha256=model_sha256, batch=batch,
        bias_width=max(2, signed_width_for(min(biases), max(biases))),
        shift_width=max(1, max([max(v - 1, 0) for v in hidden] + [0]).bit_length()),
        left_shift=max([max(-v, 0) for v in hidden] + [logit_shift]), logit_shift=logit_shift,
        multiplier=multiplier, act_width=array.act_width, weight_width=array.weight_width, acc_width=acc_width)
    return GraphProgram(config=config, rows=rows, cols=cols, alpha=alpha, batch=batch, act_width=array.act_width,
                        acc_width=acc_width, input_shape=tuple(model.input_shape), steps=steps,
                        loader_rounds=loader_rounds, act_depth=act_depth,
                        residual_depth=residual_depth)


def _accumulator_width(steps, array, rows, cols, alpha):
    """The bits every row's worst-case sum needs (activations unsigned, below 2**act_width), and no
    fewer than a tile row's own sums, as compile_program gives the chain: no sum wraps."""
    top = (1 << array.act_width) - 1
    lo = min(int(np.minimum(s.weights, 0).sum(axis=1).min(initial=0)) * top for s in steps)
    hi = max(int(np.maximum(s.weights, 0).sum(axis=1).max(initial=0)) * top for s in steps)
    tile_row = ArrayConfig(rows=rows, cols=cols, alpha=alpha, act_width=array.act_width, act_signed=False,
                           weight_width=array.weight_width, acc_width=MAX_ACC_WIDTH).min_acc_width
    return min(array.acc_width, max(signed_width_for(lo, hi), tile_row))


def _allocate(items):
    """First-fit offsets for ((start, end), size) items live from step start to step end inclusive;
    returns (offsets, depth)."""
    placed, offsets = [], []
    for (start, end), size in items:
        overlapping = sorted((o, o + z) for (s, e), o, z in placed if not (e < start or end < s))
        offset = 0
        for lo, hi in overlapping:
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        placed.append(((start, end), offset, size))
        offsets.append(offset)
    return offsets, max((o + z for _, o, z in placed), default=0)


def _layout(geometry, groups, cols, alpha, rows, taps, from_loader, where):
    """column -> (word, lane, slot), chosen so that a value's writes of one tap take few rounds.

    Channel c is row c mod R of row block c // R. The writes of row block b at tap t are one round
    when its columns (c, t) sit in R different lane classes, else as many as the most in one class.
    Each column first takes the free slot of its own row's class if there is one, else the least
    used class; then swaps of two slots of a group (a column and another, or a free slot) are kept
    while they lower the total rounds. (The loader writes one value per round: any slot will do.)"""
    slot_of = {}
    for g, columns in enumerate(groups):
        position = g % cols
        free = list(range(alpha))
        for column in columns:
            row = (int(column) // taps) % rows
            slot = min(free, key=lambda s: ((position * alpha + s) % rows != row, s))
            free.remove(slot)
            slot_of[int(column)] = slot
    if not from_loader:
        _fewer_rounds(groups, slot_of, cols, alpha, rows, taps)
    placed = {}
    for g, columns in enumerate(groups):
        word, position = divmod(g, cols)
        for column in columns:
            slot = slot_of[int(column)]
            placed[int(column)] = (word, position * alpha + slot, slot)
    return Layout(geometry=geometry, where=placed, words=math.ceil(len(groups) / cols),
                  spatial=geometry.spatial(where))


def _fewer_rounds(groups, slot_of, cols, alpha, rows, taps):
    """Local search over slot swaps inside each group, lowering sum over (block, tap) of the most
    columns in one lane class (the rounds of that block's writes at that tap)."""
    count = defaultdict(lambda: np.zeros(rows, dtype=np.int64))     # (block, tap) -> columns per class
    key = {}
    for g, columns in enumerate(groups):
        position = g % cols
        for column in columns:
            c, t = divmod(int(column), taps)
            key[int(column)] = (c // rows, t)
            count[key[int(column)]][(position * alpha + slot_of[int(column)]) % rows] += 1

    def cost(keys):
        return sum(int(count[k].max()) for k in keys)

    improved = True
    while improved:
        improved = False
        for g, columns in enumerate(groups):
            position = g % cols
            occupant = {slot_of[int(c)]: int(c) for c in columns}
            for a in range(alpha):
                for b in range(a + 1, alpha):
                    ca, cb = occupant.get(a), occupant.get(b)
                    if ca is None and cb is None:
                        continue
                    keys = {key[c] for c in (ca, cb) if c is not None}
                    before = cost(keys)
                    moves = [(c, s_from, s_to) for c, s_from, s_to in ((ca, a, b), (cb, b, a)) if c is not None]
                    for c, s_from, s_to in moves:
                        count[key[c]][(position * alpha + s_from) % rows] -= 1
                        count[key[c]][(position * alpha + s_to) % rows] += 1
                    if cost(keys) < before:
                        for c, _, s_to in moves:
                            slot_of[c] = s_to
                        occupant = {slot_of[int(c)]: int(c) for c in columns}
                        improved = True
                    else:
                        for c, s_from, s_to in moves:
                            count[key[c]][(position * alpha + s_to) % rows] -= 1
                            count[key[c]][(position * alpha + s_from) % rows] += 1


def _rounds(block, features, rows, readers):
    """The Rounds of each beat of row block `block`: per reader k and tap t, row r's value to the
    lane of column (channel, t), split where two rows aim at one lane class (the loader: one row,
    block = the input channel). Every beat takes at least two rounds (see below)."""
    rounds = []
    for k, layout in readers:
        taps = layout.geometry.taps
        for t in range(taps):
            pending = []
            for r in range(rows):
                c = block * rows + r
                if c < features and c * taps + t in layout.where:
                    word, lane, _ = layout.where[c * taps + t]
                    pending.append((r, word, lane))
            batches = []
            for write in pending:
                for batch in batches:
                    if all(w[2] % rows != write[2] % rows for w in batch):
                        batch.append(write)
                        break
                else:
                    batches.append([write])
            rounds.extend(Round(consumer=k, tap=t, writes=tuple(b)) for b in batches)
    # A beat whose values something reads takes at least two rounds (empty ones where it has fewer):
    # the one that ends a step is then seen, and the scatter decides when to take the next entry from
    # its own registers, never from the queue's output (on the ULX3S, the queue's block RAMs, their
    # output multiplexer and that decision were 15.6 ns).
    while readers and len(rounds) < 2:
        rounds.append(Round(consumer=readers[0][0], tap=0, writes=()))
    return tuple(rounds)


# ----------------------------------------------------------------------------------------------
# Running a program without the hardware


class ProgramFault(AssertionError):
    """The program broke one of its own rules (a compiler bug)."""


def execute(program, x_int):
    """Logits (n x out_features) of integer inputs (n x C x H x W), through the program's memories as
    the accelerator runs them (see the module docstring); raises ProgramFault on a broken rule."""
    P = program
    R, lanes = P.rows, P.lanes
    x = np.asarray(x_int, dtype=np.int64).reshape((-1,) + P.input_shape)
    n = len(x)
    if n > P.batch:
        raise ValueError(f"a batch holds at most {P.batch} images")
    memory = np.full((P.act_depth, lanes), -1, dtype=np.int64)      # -1: never written
    residual = np.zeros((max(P.residual_depth, 1), R), dtype=np.int64)
    written = set()

    def write(k, t, q, image, word, lane, value):
        layout, region = P.steps[k].layout, P.steps[k].region
        p, zero = layout.spatial[t][q]
        if p < 0:
            return
        address = region + (image * layout.geometry.positions + p) * layout.words + word
        if (address, lane) in written:
            raise ProgramFault(f"word {address} lane {lane} written twice")
        written.add((address, lane))
        memory[address, lane] = 0 if zero else value

    channels, height, width = P.input_shape
    for image in range(n):
        for c in range(channels):
            for q in range(height * width):
                for rnd in P.loader_rounds[c]:
                    for _, word, lane in rnd.writes:
                        write(rnd.consumer, rnd.tap, q, image, word, lane, x[image, c, q // width, q % width])

    mask = (1 << P.acc_width) - 1
    for s, step in enumerate(P.steps):
        written = set()
        layout, positions = step.layout, step.positions
        vectors = n * positions
        words = memory[step.region:step.region + vectors * layout.words].reshape(vectors, layout.words * P.cols, P.alpha)
        picked = np.take_along_axis(words[:, None, :, :], step.selects[None, :, :, None], axis=3)[..., 0]
        if np.any((picked < 0) & (step.weights[None] != 0)):
            raise ProgramFault(f"step '{step.name}' reads a lane nobody wrote")
        acc = (np.maximum(picked, 0) * step.weights[None]).sum(axis=2)      # vectors x rows
        acc = ((acc & mask) ^ (1 << (P.acc_width - 1))) - (1 << (P.acc_width - 1))
        F = step.out_features
        total = acc[:, :F] + step.bias[None]
        if step.logits:
            return (total << step.shift[None]).reshape(n, F)
        y = np.clip(_rs_columns(total, step.shift), *step.bounds)
        if step.add:
            a = step.add
            blocks = math.ceil(F / R)
            r = residual[a["region"]:a["region"] + blocks * vectors].reshape(blocks, vectors, R)
            r = r.transpose(1, 0, 2).reshape(vectors, blocks * R)[:, :F]
            y = np.clip(_rs(y, a["shift"]) + r, a["lo"], a["hi"])
        if step.residual_out:
            o = step.residual_out
            blocks = math.ceil(F / R)
            padded = np.zeros((vectors, blocks * R), dtype=np.int64)
            padded[:, :F] = _rs(y, o["shift"])
            residual[o["region"]:o["region"] + blocks * vectors] = padded.reshape(vectors, blocks, R).transpose(1, 0, 2).reshape(-1, R)
        written = set()
        for block, rounds in enumerate(step.rounds):
            for v in range(vectors):
                image, q = divmod(v, positions)
                for rnd in rounds:
                    if len({lane % R for _, _, lane in rnd.writes}) != len(rnd.writes):
                        raise ProgramFault(f"step '{step.name}': a round writes one lane class twice")
                    for row, word, lane in rnd.writes:
                        write(rnd.consumer, rnd.tap, q, image, word, lane, y[v, block * R + row])
    raise ProgramFault("the program ends without logits")


def _rs_columns(total, shift):
    """requant_shift's rounding per output column (shift per column, either sign)."""
    out = np.empty_like(total)
    for f, s in enumerate(shift):
        out[:, f] = _rs(total[:, f], s)
    return out
