"""The model accelerator behind the host link (hdl/hostlink.py): images in 'A' frames, logits out.

The link's core must have `weights` and `activations` input streams and a `results` output
stream. Here the activations are the accelerator's `images` (a beat: pixel, then `last` on the
final pixel of a batch) and the results its `logits` beats. Weights initialised by the bitstream
are on the chip, so weight frames are taken and dropped; weights loaded at start-up
(`weights_loaded`, the iCE40's SPRAM) come in 'W' frames after every reset, the program's beats in
order, before the first batch computes (the host sends them when the descriptor's max_weight_beats
is not 0). The accelerator back-pressures the images while it computes a batch
and holds logits until the host has read them, so the host needs no credits to be safe: it sends a
batch's pixels, then reads the batch's logits ('R' frames), then sends the next batch.

Descriptor ('D' reply), 52 bytes, protocol version 5:
  'S' 'M' version rows-1 cols-1 alpha-1 act_width logit_width batch-1:u16 in_features:u16
  out_features:u16 logit_row_blocks:u16 max_act_beats max_weight_beats frame_timeout:u16
  model_sha256[32]
so that a host holding a packed model refuses a board that holds another one. max_weight_beats is 0
when the weights are on the chip, else the weight beats a 'W' frame may carry.
"""

from amaranth.hdl import Module, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.linkframes import PROTOCOL_VERSION

from spec import GraphModelConfig

from .graph import GraphAccelerator
from .top import ModelAccelerator

MODEL_DESCRIPTOR_BYTES = 52
MODEL_MAGIC = b"SM"


def model_descriptor(config, *, max_act_beats, max_weight_beats, frame_timeout):
    fields = [(config.rows - 1, 1), (config.cols - 1, 1), (config.alpha - 1, 1), (config.act_width, 1),
              (config.logit_width, 1), (config.batch - 1, 2), (config.in_features, 2), (config.out_features, 2),
              (config.logit_blocks, 2), (max_act_beats, 1),
              (max_weight_beats if config.weights_loaded else 0, 1), (frame_timeout, 2)]
    data = MODEL_MAGIC + bytes([PROTOCOL_VERSION]) + b"".join(v.to_bytes(n, "little") for v, n in fields)
    data += bytes.fromhex(config.model_sha256)
    assert len(data) == MODEL_DESCRIPTOR_BYTES
    return data


class LinkedModel(wiring.Component):
    """The model accelerator (of a chain, or of a layer graph) with the stream names the host link drives."""

    def __init__(self, config, *, program, dsp_cells=0):
        accelerator = GraphAccelerator if isinstance(config, GraphModelConfig) else ModelAccelerator
        self.accelerator = accelerator(config, program=program, dsp_cells=dsp_cells)
        loaded = config.weights_loaded
        super().__init__({
            "weights": In(stream.Signature(config.array.weight_beat_width if loaded else 8)),
            "activations": In(stream.Signature(self.accelerator.image_layout)),
            "results": Out(stream.Signature(len(Value.cast(self.accelerator.logits.payload)))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = acc = self.accelerator
        if self.accelerator.config.weights_loaded:
            wiring.connect(m, wiring.flipped(self.weights), acc.weights)
        else:
            m.d.comb += self.weights.ready.eq(1)      # the weights are on the chip: dropped
        wiring.connect(m, wiring.flipped(self.activations), acc.images)
        m.d.comb += [
            self.results.valid.eq(acc.logits.valid),
            self.results.payload.eq(Value.cast(acc.logits.payload)),
            acc.logits.ready.eq(self.results.ready),
        ]
        return m


def model_link(config, program, *, divisor, rx_buffer=None, frame_timeout=64, dsp_cells=0):
    """The HostLink of a model accelerator (its array's first `dsp_cells` cells in DSP blocks)."""
    from hdl.hostlink import HostLink
    return HostLink(config, divisor=divisor, rx_buffer=rx_buffer, frame_timeout=frame_timeout,
                    core=LinkedModel(config, program=program, dsp_cells=dsp_cells), credits=1,
                    descriptor=lambda weights, acts, timeout: model_descriptor(
                        config, max_act_beats=acts, max_weight_beats=weights, frame_timeout=timeout))
