"""Configuration of the model accelerator (DESIGN.md §10): one packed model resident on the chip.

The accelerator runs a chain of integer Linear layers (ReLU fused; the last one gives logits) on a
column-combining systolic array (spec/array.py) whose weights come from an on-chip memory, with
the post-processing (bias, rounding shift, saturation) in hardware. Its configuration is the shape
of the model's program -- the array, the batch, every layer's size, groups and row blocks -- and the
packed model's digest; the program's contents (weights, biases, shifts, the activation layout) are
compiled from the packed model by software/packing/program.py and written into the Verilog's
memories. Everything sized here (memories, ports, the cycle model of the whole schedule) derives
from these fields alone, so a testbench or host holding the manifest and the packed model drives it.

Data path (hdl/accel/):
  images   one pixel per beat, `last` on the final pixel of a batch's last image; at most `batch`
           images per batch. The loader writes each pixel into the activation memory where the
           first layer reads it.
  layers   for each layer, for each row block, for each group block: the tile's weights stream
           from the weight memory into the array (double-buffered: the next tile loads while this
           one computes) and the batch's n input vectors stream from the activation memory, one
           word of cols * alpha activations each. Each result beat (rows sums of one vector) is
           post-processed in `rows` lanes and written into the next layer's input words, one
           activation per lane (row r of every row block writes a lane congruent to r modulo rows,
           which the compiler arranges by permuting rows and slots). Layer L + 1 starts once layer
           L's last result is written.
  logits   the last layer's result beats, (acc + bias) << shift, `rows` logits per beat, for each
           row block, for each image of the batch.
"""

import dataclasses
import math
import re

from .array import ArrayConfig, MULTIPLIERS
from .checks import ConfigError, FieldsConfig, check_bool, check_choice, check_int
from .ports import clock_and_reset, stream_port

TOP = "sparsegen_model"

BIAS_WIDTH = 32             # the packed model's biases (software.frontend.intmodel.BIAS_BITS)
SHIFT_WIDTH = 5             # right and left shift amounts, 0..31 (the packed model's |shift| <= 30)
MAX_BATCH = 4096
MAX_LAYERS = 64
MAX_FEATURES = 1 << 16

# Pipeline depths in clocks (hdl/accel/ builds exactly these; the cycle model reads them).
LOADER_STAGES = 2           # image handshake -> its pixel written (table read, write)
POSTPROC_STAGES = 5         # result handshake -> written (table read, bias, shift, round, saturate)
READER_LATENCY = 1          # a memory reader: address taken -> its word offered (the memory's register)
START_DELAY = 1             # a finished load or layer -> the next layer's first address issued

_SHA256 = re.compile(r"[0-9a-f]{64}")


class AcceleratorWidths:
    """What both model accelerators (this chain's and spec/graph_model.py's) derive alike from their
    array fields, `tiles`, `tile_vectors`, widths and logit shift."""

    @property
    def array(self):
        """The systolic array inside (its accumulator holds a tile's vectors: one batch's)."""
        return ArrayConfig(rows=self.rows, cols=self.cols, alpha=self.alpha, act_width=self.act_width,
                           act_signed=False, weight_width=self.weight_width, weight_signed=True,
                           acc_width=self.acc_width, multiplier=self.multiplier, max_batch=self.tile_vectors)

    def _check_array(self):
        array = self.array       # validates the array's fields
        if array.rows > array.inputs:
            raise ConfigError(f"rows ({array.rows}) must be at most cols * alpha ({array.inputs}): each row of "
                              "a result writes its own activation lane")

    @property
    def weight_beats(self):
        return self.tiles * self.rows

    @property
    def total_width(self):
        """acc + bias: the wider of the two and a carry."""
        return max(self.acc_width, self.bias_width) + 1

    @property
    def logit_width(self):
        """(acc + bias) << shift."""
        return self.total_width + self.logit_shift

    @property
    def image_beat_width(self):
        return self.act_width + 1

    @property
    def logit_beat_width(self):
        return self.rows * self.logit_width


@dataclasses.dataclass(frozen=True)
class ModelConfig(AcceleratorWidths, FieldsConfig):
    """A model accelerator: the array, the batch, and the shape of the model's program.

    rows, cols, alpha, multiplier, act_width, weight_width, acc_width
                   the array (unsigned activations: every hidden layer ends in a ReLU).
    batch          most images per batch: each weight tile is read once per batch.
    in_features    pixels per image (the first layer's inputs).
    layers         per layer (out_features, groups, row_blocks): its outputs, its column groups
                   and its row blocks on the array (row blocks may exceed ceil(out / rows) where
                   the activation layout needs a padding row).
    logit_shift    the largest left shift of the logits.
    bias_width     bits of the largest bias (signed): the post-processing table holds no more.
    shift_width    bits of the largest right shift less one in the table (the pre-shift).
    left_width     bits of the largest left shift (hidden layers' and the logits'); 0: the model
                   shifts nothing left, and the post-processing has no left shifter.
    acc_width      the array's accumulator: the compiler gives it the bits the model's worst-case
                   sums need, no more (every sum is then exact, as in the golden model).
    model_sha256   the packed model's digest (software/packfile.py): the design holds that model.
    weights_loaded the weight memory is not initialised by the bitstream (the iCE40UP5K's SPRAM cannot
                   be): the accelerator takes the program's weight beats in order on its `weights`
                   stream after every reset, and computes once it holds them all.
    """

    kind = "model accelerator configuration"

    rows: int
    cols: int
    alpha: int
    in_features: int
    layers: tuple
    model_sha256: str
    batch: int = 16
    logit_shift: int = 0
    bias_width: int = BIAS_WIDTH
    shift_width: int = SHIFT_WIDTH
    left_width: int = SHIFT_WIDTH
    multiplier: str = "pipelined"
    act_width: int = 8
    weight_width: int = 8
    acc_width: int = 32
    weights_loaded: bool = False

    def __post_init__(self):
        self._set("weights_loaded", check_bool("weights_loaded", self.weights_loaded))
        self._set("batch", check_int("batch", self.batch, 1, MAX_BATCH))
        self._set("in_features", check_int("in_features", self.in_features, 1, MAX_FEATURES))
        self._set("bias_width", check_int("bias_width", self.bias_width, 2, BIAS_WIDTH))
        self._set("shift_width", check_int("shift_width", self.shift_width, 1, SHIFT_WIDTH))
        self._set("left_width", check_int("left_width", self.left_width, 0, SHIFT_WIDTH))
        self._set("logit_shift", check_int("logit_shift", self.logit_shift, 0, (1 << SHIFT_WIDTH) - 1))
        if self.logit_shift >= 1 << self.left_width:
            raise ConfigError(f"logit_shift {self.logit_shift} does not fit left_width {self.left_width}")
        check_choice("multiplier", self.multiplier, MULTIPLIERS)
        if not isinstance(self.model_sha256, str) or not _SHA256.fullmatch(self.model_sha256):
            raise ConfigError("model_sha256 must be a SHA-256 digest (64 lowercase hex digits)")
        if not isinstance(self.layers, (tuple, list)) or not 1 <= len(self.layers) <= MAX_LAYERS:
            raise ConfigError(f"layers must be a list of 1 to {MAX_LAYERS} layers")
        self._check_array()
        array = self.array
        layers = []
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, (tuple, list)) or len(layer) != 3:
                raise ConfigError(f"layer {i} must be (out_features, groups, row_blocks)")
            out = check_int(f"layer {i} out_features", layer[0], 1, MAX_FEATURES)
            groups = check_int(f"layer {i} groups", layer[1], 1, MAX_FEATURES)
            blocks = check_int(f"layer {i} row_blocks", layer[2], 1, MAX_FEATURES)
            if blocks * array.rows < out:
                raise ConfigError(f"layer {i}: {blocks} row blocks of {self.rows} cannot hold {out} outputs")
            layers.append((out, groups, blocks))
        self._set("layers", tuple(layers))
        if self.logit_width > 64:
            raise ConfigError(f"logits of {self.logit_width} bits: at most 64")

    # ------------------------------------------------------------------------------------------
    @property
    def tile_vectors(self):
        """Vectors a tile takes: a batch of images."""
        return self.batch

    @property
    def lanes(self):
        """Activations per word of the activation memory: one input vector of one tile."""
        return self.cols * self.alpha

    def group_blocks(self, layer):
        return math.ceil(self.layers[layer][1] / self.cols)

    def row_blocks(self, layer):
        return self.layers[layer][2]

    def layer_tiles(self, layer):
        return self.row_blocks(layer) * self.group_blocks(layer)

    @property
    def tiles(self):
        return sum(self.layer_tiles(i) for i in range(len(self.layers)))

    @property
    def table_entries(self):
        """Entries of the post-processing table: one per row block of every layer."""
        return sum(self.row_blocks(i) for i in range(len(self.layers)))

    @property
    def in_features_of(self):
        """Inputs of every layer."""
        return [self.in_features] + [out for out, _, _ in self.layers[:-1]]

    @property
    def out_features(self):
        return self.layers[-1][0]

    @property
    def logit_blocks(self):
        """Row blocks of the last layer: logits beats per image."""
        return self.row_blocks(len(self.layers) - 1)

    @property
    def region_words(self):
        """Words of one half of the activation memory: a batch of any layer's input vectors.
        Layer L reads half L % 2 and writes the other."""
        return self.batch * max(self.group_blocks(i) for i in range(len(self.layers)))

    @property
    def act_depth(self):
        return 2 * self.region_words

    @property
    def word_width(self):
        """Bits of a word index inside one image's input vectors (group blocks)."""
        return max(1, (max(self.group_blocks(i) for i in range(len(self.layers))) - 1).bit_length())

    @property
    def lanes_per_class(self):
        """Lanes that one row of a result may write (r, r + rows, ...): one memory holds them."""
        return math.ceil(self.lanes / self.rows)

    @property
    def lane_class_width(self):
        """Bits that pick, for result row r, one of the lanes r, r + rows, r + 2 rows, ..."""
        return max(1, (math.ceil(self.lanes / self.rows) - 1).bit_length())

    @property
    def lane_width(self):
        return max(1, (self.lanes - 1).bit_length())

    @property
    def latency(self):
        """Clocks from a result leaving the array to its logits being offered: the post-processing
        and the output FIFO; and the array's own latency before it."""
        return self.array.latency + POSTPROC_STAGES + 2

    @property
    def design_name(self):
        name = f"model_{self.rows}x{self.cols}_a{self.alpha}_b{self.batch}_{self.model_sha256[:8]}"
        if self.multiplier != "pipelined":
            name += f"_{self.multiplier}"
        if self.weights_loaded:
            name += "_wl"
        return name

    @property
    def summary(self):
        return (f"model accelerator: {len(self.layers)} layers, {self.tiles} tiles on a {self.rows}x{self.cols} "
                f"array, alpha {self.alpha}, batch {self.batch}")

    @property
    def cycle_formula(self):
        return ("per batch of n images: n * in_features clocks of pixels; then every tile of every layer on "
                "the array (spec/array.py's timeline, weights always ready), each layer's first vector no "
                f"earlier than {START_DELAY} + {READER_LATENCY} clocks after the previous layer's last result "
                f"is written ({POSTPROC_STAGES} clocks after it leaves the array) or the batch's last pixel is "
                f"({LOADER_STAGES} clocks after its handshake); see software/golden/model_cycles.py")

    @property
    def table_fields(self):
        """(name, width) of a post-processing table entry, least significant first: whether the row is
        real, its bias, its right shift as a pre-shift and a rounding bit, its left shift (none when
        left_width is 0), and the word and lane class its output goes to (software/packing/program.py
        fills them)."""
        return (("valid", 1), ("bias", self.bias_width), ("pre_shift", self.shift_width), ("round", 1),
                *((("left", self.left_width),) if self.left_width else ()),
                ("word", self.word_width), ("lane_class", self.lane_class_width))

    @property
    def loader_fields(self):
        """(name, width) of a loader table entry: whether the pixel is used, its word and lane."""
        return (("valid", 1), ("word", self.word_width), ("lane", self.lane_width))

    def memories(self):
        """(name, width, depth) of the accelerator's memories (hdl/accel/, and the array's)."""
        arr = self.array
        width = lambda fields: sum(w for _, w in fields)  # noqa: E731
        return [("weights (loaded at start-up)" if self.weights_loaded else "weights", arr.weight_beat_width,
                 self.weight_beats),
                *((f"activation lanes {r}", self.lanes_per_class * self.act_width, self.act_depth)
                  for r in range(min(self.rows, self.lanes))),
                ("accumulator", self.rows * self.acc_width, max(self.batch, 2)),
                ("result buffer", self.rows * self.acc_width, arr.result_buffer),
                ("post-processing table", self.rows * width(self.table_fields), self.table_entries),
                ("loader table", width(self.loader_fields), self.in_features)]

    def ports(self):
        image = [{"field": "pixel", "width": self.act_width, "signed": False, "lsb": 0},
                 {"field": "last", "width": 1, "lsb": self.act_width,
                  "note": "on the final pixel of the batch's last image"}]
        logits = [{"field": "logits", "count": self.rows, "width": self.logit_width, "signed": True, "lsb": 0,
                   "note": "row r of the row block: output feature row_block * rows + r"}]
        weights = [{"field": "weight_beat", "width": self.array.weight_beat_width, "lsb": 0,
                    "note": "the program's weight beats in order, after every reset, before any image computes"}]
        return [
            *clock_and_reset(),
            *([stream_port("weights", "in", self.array.weight_beat_width, weights)] if self.weights_loaded else []),
            stream_port("images", "in", self.image_beat_width, image),
            stream_port("logits", "out", self.logit_beat_width, logits),
        ]

    def derived(self):
        return {
            "array": self.array.design_name,
            "array_latency": self.array.latency,
            "tiles": self.tiles,
            "layer_tiles": [self.layer_tiles(i) for i in range(len(self.layers))],
            "weight_beats": self.weight_beats,
            "weight_memory_bits": self.weight_beats * self.array.weight_beat_width,
            "activation_memory": {"lanes": self.lanes, "depth": self.act_depth, "width": self.act_width},
            "table_entries": self.table_entries,
            "logit_width": self.logit_width,
            "pipeline": {"loader": LOADER_STAGES, "postproc": POSTPROC_STAGES, "reader": READER_LATENCY,
                         "start": START_DELAY},
        }

    def manifest_extras(self):
        return {
            "model_sha256": self.model_sha256,
            "stream_order": "images: for each image of a batch, in_features pixels (last on the batch's final "
                            "pixel). logits: for each row block of the last layer, for each image, one beat "
                            "of rows logits (rows beyond out_features are padding)",
        }
