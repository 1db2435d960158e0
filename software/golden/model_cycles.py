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
