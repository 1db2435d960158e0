"""The host link in Amaranth's simulator: the command decoder and the response encoder under random
stalls on every stream, and the whole link (UART pins in and out) running a packed layer."""

import gc
import random
import warnings

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module, UnusedElaboratable
from amaranth.sim import Simulator

from hdl.hostlink import (DESCRIPTOR_BYTES, CommandDecoder, HostLink, ResponseEncoder, link_credits, link_descriptor,
                         result_frame_bytes)
from software.packing import beats
from software.packing.colcomb import combine
from spec import ArrayConfig
from software.golden.array import ArrayModel, reference_layer
from software.packing.schedule import schedule_layer
from tests.hdl.uart_model import hold_low, receive_byte, send_bytes


def command(opcode, words, nbytes):
    return bytes(opcode, "ascii") + len(words).to_bytes(2, "little") + b"".join(
        w.to_bytes(nbytes, "little") for w in words)


async def feed(ctx, port, items, rng, stall):
    """Drive a stream with `items`, idling at random; valid never drops before the handshake."""
    for item in items:
        while rng.random() < stall:
            await ctx.tick()
        ctx.set(port.valid, 1)
        ctx.set(port.payload, item)
        await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)


async def drain(ctx, port, out, count, rng, stall):
    """Take `count` beats from a stream with ready low at random."""
    while len(out) < count:
        ready = rng.random() >= stall
        ctx.set(port.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
        if valid and ready:
            out.append(payload)
    ctx.set(port.ready, 0)


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_decoder_splits_commands_into_beats(stall):
    weight_width, act_width = 20, 51                  # 3 and 7 bytes, with padding in the top byte
    dut = CommandDecoder(weight_width=weight_width, activation_width=act_width)
    rng = random.Random(4)
    weights = [rng.getrandbits(weight_width) for _ in range(9)]
    acts = [rng.getrandbits(act_width) for _ in range(7)]
    stream = (b"I" + command("W", weights[:4], 3) + command("A", acts[:3], 7) + b"Z" +
              command("W", [], 3) + command("W", weights[4:], 3) + command("A", acts[3:], 7) + b"I")
    got_w, got_a, got_c = [], [], []

    async def bytes_in(ctx):
        await feed(ctx, dut.bytes, list(stream), rng, stall)

    async def weights_out(ctx):
        await drain(ctx, dut.weights, got_w, len(weights), rng, stall)

    async def acts_out(ctx):
        await drain(ctx, dut.activations, got_a, len(acts), rng, stall)

    async def control_out(ctx):
        await drain(ctx, dut.control, got_c, 3, rng, stall)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in (bytes_in, weights_out, acts_out, control_out):
        sim.add_testbench(tb)
    sim.run()
    assert got_w == weights and got_a == acts and got_c == [ord("I"), ord("Z"), ord("I")]


def parse_replies(data, result_bytes, descriptor_bytes):
    frames, i = [], 0
    while i < len(data):
        tag = chr(data[i])
        size = {"R": result_bytes, "I": descriptor_bytes, "E": 2}[tag]
        frames.append((tag, bytes(data[i + 1:i + 1 + size])))
        i += 1 + size
    assert i == len(data), "a reply frame was cut short"
    return frames


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_encoder_frames_every_reply(stall):
    result_width = 70                                      # 9 bytes, padding in the top byte
    descriptor = bytes(range(100, 114))
    dut = ResponseEncoder(result_width=result_width, descriptor=descriptor)
    rng = random.Random(5)
    results = [rng.getrandbits(result_width) for _ in range(12)]
    controls = [ord("I"), ord("Q"), ord("I")]
    out = []
    n_bytes = len(results) * 10 + 2 * 15 + 3 * 3      # + overrun and framing error replies

    async def results_in(ctx):
        await feed(ctx, dut.results, results, rng, stall)

    async def control_in(ctx):
        await ctx.tick().repeat(15)
        await feed(ctx, dut.control, controls, rng, stall)

    async def strobes(ctx):
        for signal in (dut.overrun, dut.framing_error):
            await ctx.tick().repeat(rng.randrange(5, 40))
            ctx.set(signal, 1)
            await ctx.tick()
            ctx.set(signal, 0)

    async def bytes_out(ctx):
        await drain(ctx, dut.bytes, out, n_bytes, rng, stall)
        await ctx.tick().repeat(30)
        assert not ctx.get(dut.bytes.valid), "more reply bytes than expected"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in (results_in, control_in, strobes, bytes_out):
        sim.add_testbench(tb)
    sim.run()
    frames = parse_replies(out, 9, len(descriptor))
    assert [int.from_bytes(b, "little") for t, b in frames if t == "R"] == results
    assert [b for t, b in frames if t == "I"] == [descriptor, descriptor]
    assert sorted(b for t, b in frames if t == "E") == [bytes([1, ord("Q")]), bytes([2, 0]), bytes([3, 0])]


def test_hostlink_runs_a_layer_through_its_pins():
    """Bytes in on rx, a multi-tile layer on the array, result frames out on tx; then a command cut
    off by a break leaves no trace."""
    config = ArrayConfig(rows=2, cols=2, alpha=2, max_batch=4)
    divisor = 4
    dut = HostLink(config, divisor=divisor, tx_buffer=64)
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, size=(3, 9))
    w[rng.random(w.shape) > 0.6] = 0
    layer = combine(w, config.alpha, 0.5)
    x = rng.integers(-128, 128, size=(3, 9))
    schedule = schedule_layer(config, layer, x)
    expected = ArrayModel(config).run(schedule)
    assert len(expected) <= dut.credits            # all results may be outstanding at once
    n_w, n_a = (config.weight_beat_width + 7) // 8, (config.activation_beat_width + 7) // 8
    n_r = (config.result_beat_width + 7) // 8
    session = b"I"
    for tile in schedule.tiles:
        weight_words, act_words = beats.tile_beats(config, tile)
        session += command("W", weight_words, n_w) + command("A", act_words, n_a)
    received = []
    n_replies = 2 * (1 + DESCRIPTOR_BYTES) + len(expected) * (1 + n_r)

    top = Module()
    top.domains.sync = ClockDomain("sync")
    top.submodules.link = dut

    async def host_tx(ctx):
        await ctx.tick().repeat(5)
        await send_bytes(ctx, dut.rx, session, divisor)
        while len(received) < n_replies - 1 - DESCRIPTOR_BYTES:   # a break drops replies not yet sent: wait
            await ctx.tick()
        await send_bytes(ctx, dut.rx, command("A", [1, 2, 3], n_a)[:6], divisor)   # cut off ...
        await ctx.tick().repeat(40 * divisor)
        await hold_low(ctx, dut.rx, 25 * divisor)                                 # ... by a break
        await ctx.tick().repeat(4 * divisor)
        await send_bytes(ctx, dut.rx, b"I", divisor)

    async def host_rx(ctx):
        while len(received) < n_replies:
            byte = await receive_byte(ctx, dut.tx, divisor, timeout=200 * 10 * divisor)
            assert byte is not None, f"timed out after {len(received)} of {n_replies} bytes"
            received.append(byte)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(host_tx)
    sim.add_testbench(host_rx)
    sim.run()
    frames = parse_replies(received, n_r, DESCRIPTOR_BYTES)
    assert [t for t, _ in frames] == ["I"] + ["R"] * len(expected) + ["I"]
    assert frames[0][1] == frames[-1][1] == dut.descriptor
    results = [beats.result_values(config, int.from_bytes(b, "little")) for t, b in frames if t == "R"]
    assert np.array_equal(np.array(results), expected)
    assert np.array_equal(schedule.assemble(results), reference_layer(layer.unpack(), x, config.acc_width))


def test_descriptor_and_credits():
    config = ArrayConfig(rows=3, cols=2, alpha=4, act_signed=False, max_batch=300, double_buffer=False)
    d = link_descriptor(config, link_credits(config, 64))
    assert d[:3] == b"SG\x02" and len(d) == DESCRIPTOR_BYTES == 16
    assert list(d[3:9]) == [2, 1, 3, 8, 8, 32] and d[9] == 0b010
    assert int.from_bytes(d[10:12], "little") == 299
    assert result_frame_bytes(config) == 13 and int.from_bytes(d[12:14], "little") == 4
    assert d[14:] == b"\x00\x00"           # no term budgets: integer cells
    assert link_credits(config, 5) == 1      # the encoder holds one frame
    tq = ArrayConfig(rows=3, cols=2, alpha=4, mac="tq", weight_terms=2, data_terms=3)
    d = link_descriptor(tq, 7)
    assert d[9] == 0b1111 and d[14:] == b"\x02\x03"


@pytest.mark.parametrize("kwargs, message", [
    (dict(divisor=2), "divisor must be at least 4"),
    (dict(divisor=8, rx_buffer=0), "rx_buffer must be at least 1"),
    (dict(divisor=8, tx_buffer=-1), "tx_buffer must be at least 1"),
])
def test_bad_arguments(kwargs, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)    # never built: that is the point
        with pytest.raises(ValueError, match=message):
            HostLink(ArrayConfig(rows=2, cols=2), **kwargs)
        gc.collect()
