"""Cycle model of the model accelerator (spec/model.py, hdl/accel/), equal to what the RTL does
(asserted in tests/sim/test_accel.py).

It assumes pixels are always offered and logits always taken, and counts from the clock of the
first pixel's handshake to the clock of the last logits beat's, inclusive. Clock 0 is the first
clock after reset: the weight reader's first beat reaches the array at READER_LATENCY. An
accelerator that loads its weights at start-up (`weights_loaded`) takes them one beat per clock
from clock 0 (offered from then on, as the pixels are) and starts its weight reader once it holds
them all, so its first weight beat reaches the array at weight_beats + READER_LATENCY.

For each batch of n images, starting at clock s (its first pixel):
  pixels      s .. s + n * in_features - 1, one per clock; the last one's write ends at + LOADER_STAGES
  layer L     its tiles on the array's timeline (software/golden/cycles.py: weights load into a free
              bank one beat per clock, vectors issue one per clock once their tile's weights are in),
              the layer's first vector no earlier than `ready_L`:
                ready_0     = last pixel + LOADER_STAGES + READER_LATENCY
                ready_L+1   = r_L + POSTPROC_STAGES + START_DELAY + READER_LATENCY
              where r_L = last vector's handshake + the array's latency, its last result's handshake
  logits      the last result's logits are offered at r + POSTPROC_STAGES + 2 (the logits buffer)
  next batch  its first pixel at r_last + POSTPROC_STAGES + 1
"""

from spec.graph_model import LOGITS_LATENCY, POST_STAGES, SCATTER_STAGES, GraphModelConfig
from spec.graph_model import START_DELAY as GRAPH_START_DELAY
from spec.model import LOADER_STAGES, POSTPROC_STAGES, READER_LATENCY, START_DELAY

from .cycles import ArrayTimeline

LOGITS_BUFFER_LATENCY = 2       # a write into the logits buffer -> offered


def batch_sizes(config, images, batch=None):
    """The batches a stream of `images` images makes when the host sends `batch` images per batch
    (default, and at most, the accelerator's `batch`): full batches, then the rest."""
    batch = config.batch if batch is None else batch
    if not 1 <= batch <= config.batch:
        raise ValueError(f"a batch holds 1 to {config.batch} images, not {batch}")
    full, rest = divmod(images, batch)
    return [batch] * full + ([rest] if rest else [])


def model_cycles(config, images, batch=None):
    """Clocks to run `images` images sent `batch` at a time (default: the accelerator's batch),
    first pixel handshake to last logits handshake inclusive."""
    if images < 1:
        return 0
    if isinstance(config, GraphModelConfig):
        return graph_cycles(config, images, batch)
    loading = config.weight_beats if config.weights_loaded else 0
    timeline = ArrayTimeline(config.array, first_load=loading + READER_LATENCY)
    latency = config.array.latency
    start = 0
    for n in batch_sizes(config, images, batch):
        ready = start + n * config.in_features - 1 + LOADER_STAGES + READER_LATENCY
        for i in range(len(config.layers)):
            for t in range(config.layer_tiles(i)):
                timeline.add(n, earliest=ready if t == 0 else 0)
            result = timeline.last_accept + latency
            ready = result + POSTPROC_STAGES + START_DELAY + READER_LATENCY
        last_logits = result + POSTPROC_STAGES + LOGITS_BUFFER_LATENCY
        start = result + POSTPROC_STAGES + 1
    return last_logits + 1


class _Scatter:
    """The graph accelerator's queue and scatter: an entry pushed at clock e with n rounds is popped at
    d = max(e + 1, the previous entry's pop + its rounds); its rounds issue at d + 1 .. d + n, and the
    last one writes SCATTER_STAGES clocks later."""

    def __init__(self):
        self.free = 0           # the earliest clock of the next pop

    def run(self, pushes):
        """(push clock, rounds) in order -> the clock of the last write."""
        last = None
        for pushed, rounds in pushes:
            pop = max(pushed + 1, self.free)
            self.free = pop + rounds
            last = pop + rounds + SCATTER_STAGES
        return last


def graph_cycles(config, images, batch=None):
    """The graph accelerator (spec/graph_model.py, hdl/accel/graph.py): per batch of n images, a pixel
    per clock into the queue; each step's tiles on the array's timeline, its first vector no earlier
    than START_DELAY + READER_LATENCY clocks after the previous step's last write (the load's, for step
    0); its result beats, one per clock from the last group block's vectors, each into the queue
    POST_STAGES clocks after its handshake (a step without rounds ends with its last beat's residual,
    then); the logits offered LOGITS_LATENCY clocks after they are written, and the next batch's first
    pixel a clock after its last logits are written."""
    timeline = ArrayTimeline(config.array, first_load=READER_LATENCY)
    latency = config.array.latency
    channels, height, width = config.input_shape
    plane = height * width
    start = 0
    for n in batch_sizes(config, images, batch):
        pixels = n * config.in_features
        done = _Scatter().run((start + i, config.loader_rounds[(i % config.in_features) // plane])
                              for i in range(pixels))
        for s, (out, words, positions, rounds) in enumerate(config.steps):
            vectors = n * positions
            beats = []
            for rb in range(config.row_blocks(s)):
                for gb in range(words):
                    first = rb == 0 and gb == 0
                    _, issue = timeline.add(vectors, earliest=done + GRAPH_START_DELAY + READER_LATENCY if first else 0)
                beats.extend((issue + j + latency + POST_STAGES, rounds[rb]) for j in range(vectors))
            if s == len(config.steps) - 1:
                last_logits = beats[-1][0] + LOGITS_LATENCY
                start = beats[-1][0] + 1
            elif any(rounds):
                done = _Scatter().run(beats)
            else:
                done = beats[-1][0]
    return last_logits + 1
