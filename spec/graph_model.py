"""Configuration of the model accelerator for a layer graph (DESIGN.md §10): convolutions, residual
adds and global average pooling, resident on the chip (hdl/accel/graph.py builds it).

The program (software/packing/graph_program.py) is a list of steps, one per matrix the array
multiplies; its tables (weights, post-processing, write rounds, spatial table) are compiled from the
packed model and written into the Verilog's memories. This configuration is the program's shape:
what sizes the memories and ports and what the cycle model of the whole schedule
(software/golden/model_cycles.py) needs -- each step's outputs, input words, positions and the write
rounds of each of its row blocks' beats, and the loader's rounds per input channel.

Data path:
  images   C x H x W pixels per image (channel-major, as the packed model's input), one per beat,
           `last` on the final pixel of the batch's last image.
  load     each pixel goes into the scatter queue and takes its channel's rounds (one per consumer
           and kernel tap): the words of the first steps' input vectors that read it.
  steps    for each row block, each group block, each image and each position: one word of the step's
           input region into the array (weights double-buffered, as in the chain); each result beat
           through POST_STAGES of post-processing into the queue (its value's rounds), the residual
           buffer, or the logits buffer. A step starts once the previous step's last write is done.
  logits   the last step's beats: for each row block, for each image, `rows` logits.
"""

import dataclasses
import math
import re

from .array import MULTIPLIERS
from .checks import ConfigError, FieldsConfig, check_choice, check_int
from .model import BIAS_WIDTH, MAX_BATCH, MAX_FEATURES, READER_LATENCY, SHIFT_WIDTH, AcceleratorWidths
from .ports import clock_and_reset, stream_port

TOP = "sparsegen_graph_model"

# Pipeline depths in clocks (hdl/accel/graph.py builds exactly these; the cycle model reads them).
POST_STAGES = 8         # a result's handshake -> its value into the queue, residual buffer or logits buffer
QUEUE_LATENCY = 2       # an entry's pop -> its first round (the queue's output register, then the scatter's)
SCATTER_STAGES = 4      # a round's issue -> its write
START_DELAY = 2         # a step's last write -> its successor's first address (a registered start, then feeding)
LOGITS_LATENCY = 2      # a write into the logits buffer -> offered
MAX_STEPS = 256
MAX_ROUNDS = 4096

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _tuple(value):
    return tuple(_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


@dataclasses.dataclass(frozen=True)
class GraphModelConfig(AcceleratorWidths, FieldsConfig):
    """A graph model accelerator: the array, the batch and the shape of the program.

    input_shape     (channels, height, width) of an image.
    steps           per step (out_features, words, positions, rounds): its outputs, the words (group
                    blocks) of one input vector, its input vectors per image, and per row block the
                    write rounds of each beat (0: its values go only to the residual buffer or are logits).
    loader_rounds   per input channel, the write rounds of each of its pixels.
    act_depth, residual_depth, queue_depth    words of the activation memory, the residual buffer and
                    the scatter queue (the queue holds every beat of the largest step, so the array
                    never waits for it).
    bias_width, shift_width, left_shift, logit_shift, acc_width   as the chain's (spec/model.py): the
                    largest bias, right pre-shift and left shift the program holds; the logits' left
                    shift; the accumulator the model's worst-case sums need.
    """

    kind = "graph model accelerator configuration"

    rows: int
    cols: int
    alpha: int
    input_shape: tuple
    steps: tuple
    loader_rounds: tuple
    act_depth: int
    residual_depth: int
    queue_depth: int
    model_sha256: str
    batch: int = 4
    bias_width: int = BIAS_WIDTH
    shift_width: int = SHIFT_WIDTH
    left_shift: int = 0
    logit_shift: int = 0
    multiplier: str = "pipelined"
    act_width: int = 8
    weight_width: int = 8
    acc_width: int = 32

    def __post_init__(self):
        self._set("batch", check_int("batch", self.batch, 1, MAX_BATCH))
        self._set("bias_width", check_int("bias_width", self.bias_width, 2, BIAS_WIDTH))
        self._set("shift_width", check_int("shift_width", self.shift_width, 1, SHIFT_WIDTH))
        self._set("left_shift", check_int("left_shift", self.left_shift, 0, (1 << SHIFT_WIDTH) - 1))
        self._set("logit_shift", check_int("logit_shift", self.logit_shift, 0, self.left_shift))
        check_choice("multiplier", self.multiplier, MULTIPLIERS)
        if not isinstance(self.model_sha256, str) or not _SHA256.fullmatch(self.model_sha256):
            raise ConfigError("model_sha256 must be a SHA-256 digest (64 lowercase hex digits)")
        shape = _tuple(self.input_shape)
        if not isinstance(shape, tuple) or len(shape) != 3:
            raise ConfigError("input_shape must be (channels, height, width)")
        self._set("input_shape", tuple(check_int("input_shape", v, 1, MAX_FEATURES) for v in shape))
        if self.in_features > MAX_FEATURES:
            raise ConfigError(f"an image of {self.in_features} pixels: at most {MAX_FEATURES}")
        steps = _tuple(self.steps)
        if not isinstance(steps, tuple) or not 1 <= len(steps) <= MAX_STEPS:
            raise ConfigError(f"steps must be a list of 1 to {MAX_STEPS} steps")
        checked = []
        for i, step in enumerate(steps):
            if not isinstance(step, tuple) or len(step) != 4 or not isinstance(step[3], tuple):
                raise ConfigError(f"step {i} must be (out_features, words, positions, rounds per row block)")
            out = check_int(f"step {i} out_features", step[0], 1, MAX_FEATURES)
            words = check_int(f"step {i} words", step[1], 1, MAX_FEATURES)
            positions = check_int(f"step {i} positions", step[2], 1, MAX_FEATURES)
            if len(step[3]) != math.ceil(out / self.rows):
                raise ConfigError(f"step {i}: {len(step[3])} row blocks of rounds for {out} outputs")
            rounds = tuple(check_int(f"step {i} rounds", r, 0, MAX_ROUNDS) for r in step[3])
            if 1 in rounds:
                raise ConfigError(f"step {i}: a beat with writes takes at least 2 rounds (the scatter decides "
                                  "its next entry from registers)")
            checked.append((out, words, positions, rounds))
        self._set("steps", tuple(checked))
        self._check_array()
        if any(checked[-1][3]) or checked[-1][2] != 1:
            raise ConfigError("the last step gives the logits: one position, no rounds")
        loader = _tuple(self.loader_rounds)
        if not isinstance(loader, tuple) or len(loader) != self.input_shape[0]:
            raise ConfigError("loader_rounds must give the rounds of each input channel")
        self._set("loader_rounds", tuple(check_int("loader rounds", r, 2, MAX_ROUNDS) for r in loader))
        for name in ("act_depth", "residual_depth", "queue_depth"):
            self._set(name, check_int(name, getattr(self, name), 0, 1 << 24))
        if self.queue_depth <= max(self.batch * self.in_features,
                                   max(self.batch * p * len(r) for _, _, p, r in self.steps)):
            raise ConfigError("queue_depth must hold more than every beat of a step (and every pixel of a batch)")
        if self.logit_width > 64:
            raise ConfigError(f"logits of {self.logit_width} bits: at most 64")

    # ------------------------------------------------------------------------------------------
    @property
    def tile_vectors(self):
        """Vectors a tile takes: a batch of images times the step's positions, at the most."""
        return self.batch * max(p for _, _, p, _ in self.steps)

    weights_loaded = False      # a graph's weights are in the bitstream (loading them: not yet)

    @property
    def lanes(self):
        return self.cols * self.alpha

    @property
    def in_features(self):
        return math.prod(self.input_shape)

    @property
    def out_features(self):
        return self.steps[-1][0]

    def row_blocks(self, step):
        return math.ceil(self.steps[step][0] / self.rows)

    @property
    def logit_blocks(self):
        return self.row_blocks(len(self.steps) - 1)

    @property
    def tiles(self):
        return sum(self.row_blocks(i) * words for i, (_, words, _, _) in enumerate(self.steps))

    @property
    def value_width(self):
        """A post-processed value before saturation: the total shifted left."""
        return self.total_width + self.left_shift

    @property
    def left_width(self):
        return max(1, self.left_shift.bit_length())

    @property
    def residual_width(self):
        """A residual operand: a saturated value (at most the signed range) shifted right."""
        return self.act_width + 2

    @property
    def latency(self):
        return self.array.latency + POST_STAGES + LOGITS_LATENCY

    @property
    def design_name(self):
        name = f"graph_{self.rows}x{self.cols}_a{self.alpha}_b{self.batch}_{self.model_sha256[:8]}"
        if self.multiplier != "pipelined":
            name += f"_{self.multiplier}"
        return name

    @property
    def summary(self):
        return (f"graph model accelerator: {len(self.steps)} steps, {self.tiles} tiles on a {self.rows}x{self.cols} "
                f"array, alpha {self.alpha}, batch {self.batch}")

    @property
    def cycle_formula(self):
        return ("per batch of n images: n * in_features clocks of pixels, each taking its channel's rounds in "
                "the scatter (one round per clock, a queue entry popped a clock after it is pushed and no "
                f"earlier than its predecessor's last round, the write {SCATTER_STAGES} clocks after the round); "
                "then every step's tiles on the array (spec/array.py's timeline), its first vector no earlier than "
                f"{START_DELAY} + {READER_LATENCY} clocks after the previous step's last write; each result beat "
                f"enters the queue {POST_STAGES} clocks after its handshake; see software/golden/model_cycles.py")

    def memories(self):
        arr = self.array
        return [("weights", arr.weight_beat_width, self.weight_beats),
                *((f"activation lanes {r}", math.ceil(self.lanes / self.rows) * self.act_width, self.act_depth)
                  for r in range(min(self.rows, self.lanes))),
                ("residual buffer", self.rows * self.residual_width, self.residual_depth),
                ("scatter queue", self.rows * self.act_width, self.queue_depth),
                ("accumulator", self.rows * self.acc_width, arr.max_batch),
                ("result buffer", self.rows * self.acc_width, arr.result_buffer)]

    def ports(self):
        image = [{"field": "pixel", "width": self.act_width, "signed": False, "lsb": 0},
                 {"field": "last", "width": 1, "lsb": self.act_width,
                  "note": "on the final pixel of the batch's last image"}]
        logits = [{"field": "logits", "count": self.rows, "width": self.logit_width, "signed": True, "lsb": 0,
                   "note": "row r of the row block: output feature row_block * rows + r"}]
        return [*clock_and_reset(),
                stream_port("images", "in", self.image_beat_width, image),
                stream_port("logits", "out", self.logit_beat_width, logits)]

    def derived(self):
        return {"array": self.array.design_name, "array_latency": self.array.latency, "tiles": self.tiles,
                "weight_beats": self.weight_beats, "in_features": self.in_features,
                "logit_width": self.logit_width,
                "pipeline": {"post": POST_STAGES, "scatter": SCATTER_STAGES, "reader": READER_LATENCY,
                             "start": START_DELAY}}

    def manifest_extras(self):
        return {"model_sha256": self.model_sha256,
                "stream_order": "images: for each image of a batch, C x H x W pixels, channel-major (last on the "
                                "batch's final pixel). logits: for each row block of the last step, for each image, "
                                "one beat of rows logits (rows beyond out_features are padding)"}


def model_config_from_dict(fields):
    """The configuration of either model accelerator from its fields (a manifest's or a build summary's):
    a layer graph's has steps, a chain's layers."""
    from .model import ModelConfig
    graph = isinstance(fields, dict) and "steps" in fields
    return (GraphModelConfig if graph else ModelConfig).from_dict(fields)
