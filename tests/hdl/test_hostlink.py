"""The host link (protocol v5) in Amaranth's simulator: the frame buffer, the command decoder and
the reply encoder under random stalls, and the whole link through its UART pins:
a packed layer, and frames that are damaged, cut off, repeated, unknown or surrounded by garbage.

Frames are built here from the protocol's description with amaranth.lib.crc's own software CRC,
independently of software/host.py (whose CRC is checked against it)."""

import dataclasses
import gc
import random
import warnings

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module, Signal, UnusedElaboratable
from amaranth.lib import crc
from amaranth.sim import Simulator

from hdl.hostlink import (DESCRIPTOR_BYTES, SELECT_BYTE_LATENCY, CommandDecoder, HostLink, link_credits, link_descriptor,
                          result_frame_bytes, select_byte)
from hdl.linkbuffers import FrameBuffer
from hdl.linkframes import REPLY_KINDS, ReplyEncoder
from software.host import crc16
from software.packing import beats
from software.packing.colcomb import combine
from spec import ArrayConfig
from software.golden.array import ArrayModel, reference_layer
from software.packing.schedule import schedule_layer
from tests.hdl.uart_model import hold_low, receive_byte, send_bytes

CCITT = crc.catalog.CRC16_CCITT_FALSE(data_width=8)


def host_frame(seq, command, count=0, body=b""):
    content = bytes([seq, ord(command), count]) + bytes(body)
    return b"\xa5" + content + CCITT.compute(content).to_bytes(2, "big")


def beats_frame(seq, command, words, nbytes):
    return host_frame(seq, command, len(words), b"".join(w.to_bytes(nbytes, "little") for w in words))


def parse_replies(data, result_bytes):
    """Reply frames as (seq, kind, body); asserts every frame is whole and its CRC checks."""
    sizes = {"K": 0, "N": 0, "D": DESCRIPTOR_BYTES, "R": result_bytes, "E": 1}
    frames, i = [], 0
    while i < len(data):
        assert data[i] == 0xA5, f"byte {i} is {data[i]:#04x}, not a frame start"
        kind = chr(data[i + 2])
        end = i + 3 + sizes[kind] + 2
        assert end <= len(data), "a reply frame was cut short"
        assert CCITT.compute(bytes(data[i + 1:end - 2])) == int.from_bytes(bytes(data[end - 2:end]), "big")
        frames.append((data[i + 1], kind, bytes(data[i + 3:end - 2])))
        i = end
    return frames


def test_host_crc_is_amaranths():
    rng = random.Random(1)
    for n in (0, 1, 9, 40):
        data = bytes(rng.getrandbits(8) for _ in range(n))
        assert crc16(data) == CCITT.compute(data)
    assert crc16(b"123456789") == 0x29B1                    # the catalog's check value
    framed = b"abc" + crc16(b"abc").to_bytes(2, "big")
    assert crc16(framed) == 0                               # the residue the board checks for


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


def run(dut, *testbenches):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_frame_buffer_shows_only_committed_bytes(stall):
    """Frames written and then committed come out in order; rolled-back ones never do, and a
    frame that does not fit sets `full` instead of overwriting unread bytes."""
    dut = FrameBuffer(depth=16)
    rng = random.Random(2)
    frames = [(bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 9))), rng.random() < 0.6)
              for _ in range(30)]
    expected = b"".join(data for data, keep in frames if keep)
    out = []
    overflowed = []

    async def writer(ctx):
        for data, keep in frames:
            while True:
                lost = False
                for byte in data:
                    lost |= bool(ctx.get(dut.full))
                    ctx.set(dut.write_data, byte)
                    ctx.set(dut.write, 1)
                    await ctx.tick()
                    ctx.set(dut.write, 0)
                    await ctx.tick().repeat(rng.randrange(1, 3))
                signal = dut.commit if keep and not lost else dut.rollback
                ctx.set(signal, 1)
                await ctx.tick()
                ctx.set(signal, 0)
                if not (keep and lost):
                    break
                overflowed.append(data)               # no room: roll back, let it drain, again
                await ctx.tick().repeat(40)

    async def reader(ctx):
        await drain(ctx, dut.r_stream, out, len(expected), rng, 0.9 if stall else 0.0)   # slow: fills up
        await ctx.tick().repeat(50)
        assert not ctx.get(dut.r_stream.valid), "a rolled-back byte came out"

    run(dut, writer, reader)
    assert bytes(out) == expected
    if stall:
        assert overflowed, "the buffer never filled: the test does not exercise `full`"


def test_frame_buffer_reads_a_byte_per_clock():
    """Behind its output register the frame buffer still gives a byte every clock to a reader that
    takes one every clock, a few clocks after the commit; and holds its byte while ready is low."""
    dut = FrameBuffer(depth=16)
    data = bytes(range(7, 19))
    arrivals = []

    async def testbench(ctx):
        for byte in data:
            ctx.set(dut.write_data, byte)
            ctx.set(dut.write, 1)
            await ctx.tick()
        ctx.set(dut.write, 0)
        ctx.set(dut.commit, 1)
        await ctx.tick()
        ctx.set(dut.commit, 0)
        ctx.set(dut.r_stream.ready, 0)
        await ctx.tick().repeat(5)                 # the output register and the skid slot fill
        assert ctx.get(dut.r_stream.valid) and ctx.get(dut.r_stream.payload) == data[0]
        ctx.set(dut.r_stream.ready, 1)
        for clock in range(len(data) + 4):
            _, _, valid, payload = await ctx.tick().sample(dut.r_stream.valid, dut.r_stream.payload)
            if valid:
                arrivals.append((clock, payload))

    run(dut, testbench)
    assert bytes(p for _, p in arrivals) == data
    assert [c for c, _ in arrivals] == list(range(len(data))), "a clock without a byte"


@pytest.mark.parametrize("byte_hops", [1, 2])
@pytest.mark.parametrize("stall", [0.0, 0.5])
@pytest.mark.parametrize("weight_width,act_width", [
    (20, 51),           # 3 and 7 bytes, with padding in the top byte: the lanes of one copy
    (20, 150),          # 19 bytes: the lanes of three copies (LANES_PER_COPY)
    (8, 5),             # one byte each: one lane
])
def test_decoder_splits_frames_into_beats(stall, weight_width, act_width, byte_hops):
    dut = CommandDecoder(weight_width=weight_width, activation_width=act_width, byte_hops=byte_hops)
    rng = random.Random(4)
    weights = [rng.getrandbits(weight_width) for _ in range(9)]
    acts = [rng.getrandbits(act_width) for _ in range(7)]

    def body(command, words, nbytes):
        return bytes([ord(command), len(words)]) + b"".join(w.to_bytes(nbytes, "little") for w in words)

    w_bytes, a_bytes = -(-weight_width // 8), -(-act_width // 8)
    stream = (body("W", weights[:4], w_bytes) + body("A", acts[:3], a_bytes) + body("W", weights[4:], w_bytes) +
              body("A", acts[3:], a_bytes))
    got_w, got_a = [], []

    async def bytes_in(ctx):
        await feed(ctx, dut.bytes, list(stream), rng, stall)

    async def weights_out(ctx):
        await drain(ctx, dut.weights, got_w, len(weights), rng, stall)

    async def acts_out(ctx):
        await drain(ctx, dut.activations, got_a, len(acts), rng, stall)

    run(dut, bytes_in, weights_out, acts_out)
    assert got_w == weights and got_a == acts


@pytest.mark.parametrize("value_bytes", [1, 9, 16, 64])
def test_select_byte_names_a_byte_and_has_it_two_clocks_later(value_bytes):
    """Every byte of values of several widths (one word, a part word, whole words), named on
    consecutive clocks in a random order: each arrives exactly SELECT_BYTE_LATENCY clocks later."""
    m = Module()
    value = Signal(8 * value_bytes)
    index = Signal(range(value_bytes))
    byte = select_byte(m, value, index)
    rng = random.Random(value_bytes)
    content = rng.getrandbits(8 * value_bytes)
    order = rng.sample(range(value_bytes), value_bytes) * 2
    got = []

    async def bench(ctx):
        ctx.set(value, content)
        for k in range(len(order) + SELECT_BYTE_LATENCY):
            if k < len(order):
                ctx.set(index, order[k])
            await ctx.tick()
            if k >= SELECT_BYTE_LATENCY - 1 and len(got) < len(order):
                got.append(ctx.get(byte))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == [(content >> (8 * i)) & 0xFF for i in order]


@pytest.mark.parametrize("stall,read_latency", [(0.0, 1), (0.5, 1), (0.5, 2), (0.0, 3)])
def test_encoder_frames_every_reply(stall, read_latency):
    result_bytes = 9
    descriptor = bytes(range(100, 100 + DESCRIPTOR_BYTES))
    dut = ReplyEncoder(result_bytes=result_bytes, descriptor=descriptor, read_latency=read_latency)
    rng = random.Random(5)
    head = bytes(rng.getrandbits(8) for _ in range(result_bytes))
    requests = [("K", 7, 0), ("D", 8, 0), ("E", 9, 3), ("R", 10, 0), ("N", 11, 0), ("R", 10, 0)]
    out = []
    n_bytes = sum(5 + {"K": 0, "N": 0, "D": DESCRIPTOR_BYTES, "E": 1, "R": result_bytes}[k] for k, *_ in requests)

    async def requester(ctx):
        for kind, seq, code in requests:
            await ctx.tick().until(~dut.busy)
            ctx.set(dut.kind, REPLY_KINDS.index(kind.encode()))
            ctx.set(dut.seq, seq)
            ctx.set(dut.code, code)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick().repeat(2)
            await ctx.tick().until(~dut.busy)          # the fields hold still while it sends

    async def store(ctx):                             # the result, read `read_latency` clocks late
        named = [0] * (read_latency - 1)
        while True:
            named.append(ctx.get(dut.read_index))
            await ctx.tick()
            index = named.pop(0)
            ctx.set(dut.read_data, head[index] if index < len(head) else 0)

    async def bytes_out(ctx):
        await drain(ctx, dut.bytes, out, n_bytes, rng, stall)
        await ctx.tick().repeat(30)
        assert not ctx.get(dut.bytes.valid), "more reply bytes than expected"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(requester)
    sim.add_testbench(store, background=True)
    sim.add_testbench(bytes_out)
    sim.run()
    frames = parse_replies(out, result_bytes)
    assert frames == [(7, "K", b""), (8, "D", descriptor), (9, "E", bytes([3])), (10, "R", head),
                      (11, "N", b""), (10, "R", head)]


class LinkBench:
    """The whole link behind its pins: a host that sends bytes and collects reply frames."""

    def __init__(self, config, *, divisor=4, rx_buffer=64, frame_timeout=4, hops=None):
        self.config = config
        self.divisor = divisor
        self.dut = HostLink(config, divisor=divisor, rx_buffer=rx_buffer, frame_timeout=frame_timeout, hops=hops)
        self.n_w = (config.weight_beat_width + 7) // 8
        self.n_a = (config.activation_beat_width + 7) // 8
        self.n_r = (config.result_beat_width + 7) // 8
        self.received = bytearray()
        # Quiet long enough for the board to give up a frame and finish any reply.
        self.quiet = (frame_timeout + 5 + DESCRIPTOR_BYTES + 4) * 10 * divisor

    def run(self, host):
        top = Module()
        top.domains.sync = ClockDomain("sync")
        top.submodules.link = self.dut

        async def host_rx(ctx):
            while True:
                byte = await receive_byte(ctx, self.dut.tx, self.divisor)
                self.received.append(byte)

        sim = Simulator(top)
        sim.add_clock(1e-8)
        sim.add_testbench(host_rx, background=True)
        sim.add_testbench(host)
        sim.run()

    async def exchange(self, ctx, data, replies=1):
        """Send `data`, wait until the line has been quiet, return the reply frames since."""
        start = len(self.received)
        await send_bytes(ctx, self.dut.rx, data, self.divisor)
        waited = 0
        while waited < self.quiet:
            before = len(self.received)
            await ctx.tick().repeat(10 * self.divisor)
            waited = 0 if len(self.received) != before else waited + 10 * self.divisor
        return parse_replies(self.received[start:], self.n_r)


def layer_session(config, seed):
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, size=(3, 9))
    w[rng.random(w.shape) > 0.6] = 0
    layer = combine(w, config.alpha, 0.5)
    x = rng.integers(-128, 128, size=(3, 9))
    return layer, x, schedule_layer(config, layer, x)


# With the decoder's beats crossing to the array through stream hops (hdl/streamhop.py; with no
# platform, as here, the default) and without (the iCE40's link).
@pytest.mark.parametrize("hops", [True, False], ids=["hops", "direct"])
def test_hostlink_runs_a_layer_through_its_pins(hops):
    """Frames in on rx, a multi-tile layer on the array, acknowledgements and results out on tx;
    then a frame cut off by a break leaves no trace."""
    config = ArrayConfig(rows=2, cols=2, alpha=2, max_batch=4)
    bench = LinkBench(config, hops=hops)
    dut = bench.dut
    layer, x, schedule = layer_session(config, 3)
    expected = ArrayModel(config).run(schedule)
    assert len(expected) <= dut.credits            # all results may be unread at once
    log = []

    async def host(ctx):
        seq = 0

        async def send(command, count=0, body=b""):
            nonlocal seq
            seq += 1
            replies = await bench.exchange(ctx, host_frame(seq, command, count, body))
            log.append((seq, command, replies))
            return replies

        await ctx.tick().repeat(5)
        await send("I")
        for tile in schedule.tiles:
            weight_words, act_words = beats.tile_beats(config, tile)
            nbytes = [(weight_words, bench.n_w, "W"), (act_words, bench.n_a, "A")]
            for words, n, command in nbytes:
                await send(command, len(words), b"".join(w.to_bytes(n, "little") for w in words))
        for _ in range(len(expected) + 1):
            await send("R")
        # A frame cut off by a break; the board comes back clean.
        await send_bytes(ctx, dut.rx, beats_frame(seq + 1, "A", [1, 2, 3], bench.n_a)[:9], bench.divisor)
        await hold_low(ctx, dut.rx, 25 * bench.divisor)
        await ctx.tick().repeat(4 * bench.divisor)
        await send("I")
        await send("R")

    bench.run(host)
    assert log[0][2] == [(1, "D", dut.descriptor)]
    results = []
    for seq, command, replies in log[1:]:
        assert len(replies) == 1 and replies[0][0] == seq, (command, replies)
        kind, body = replies[0][1:]
        if command in "WA":
            assert kind == "K"
        elif command == "R" and kind == "R":
            results.append(beats.result_values(config, int.from_bytes(body, "little")))
    assert [r[1] for r in log[-3][2]] == ["N"]       # every result read, then none
    assert log[-2][2][0][1:] == ("D", dut.descriptor) and log[-1][2][0][1] == "N"
    assert np.array_equal(np.array(results), expected)
    assert np.array_equal(schedule.assemble(results), reference_layer(layer.unpack(), x, config.acc_width))


def test_hostlink_rejects_bad_frames_and_applies_each_frame_once():
    """Damaged, cut-off, unknown, miscounted and repeated frames, and garbage between frames: each
    bad frame gets an error naming its sequence number and changes nothing; a repeated frame is
    answered again and not applied again; a repeated read returns the same result, the next read
    the next one. The layer's results stay exact."""
    config = ArrayConfig(rows=2, cols=2, alpha=2, max_batch=4)
    bench = LinkBench(config)
    layer, x, schedule = layer_session(config, 4)
    expected = ArrayModel(config).run(schedule)
    log = []

    async def host(ctx):
        seq = 0

        async def send(data, label):
            log.append((label, await bench.exchange(ctx, data)))

        for number, tile in enumerate(schedule.tiles):
            weight_words, act_words = beats.tile_beats(config, tile)
            for words, n, command in [(weight_words, bench.n_w, "W"), (act_words, bench.n_a, "A")]:
                seq += 1
                good = beats_frame(seq, command, words, n)
                if number:                            # the first tile's frames are enough to damage
                    await send(good, ("good", seq))
                    continue
                flipped = bytearray(good)
                flipped[5] ^= 0x10
                await send(bytes(flipped), ("bad crc", seq))
                await send(good[:-3], ("cut off", seq))
                await send(b"\x13\x37\xa5\x00", ("garbage", seq))
                await send(good, ("good", seq))
                await send(good, ("repeat", seq))
        seq += 1
        await send(host_frame(seq, "Q"), ("unknown", seq))
        await send(host_frame(seq, "W", 0), ("bad count", seq))
        await send(host_frame(seq, "I", 1, b"\x00"), ("bad count", seq))
        for _ in expected:
            seq += 1
            await send(host_frame(seq, "R"), ("read", seq))
            await send(host_frame(seq, "R"), ("read again", seq))

    bench.run(host)
    results = []
    for (label, seq), replies in log:
        kinds = [(s, k, b) for s, k, b in replies]
        if label == "bad crc":
            assert kinds == [(seq, "E", bytes([1]))]
        elif label == "cut off":
            assert kinds == [(seq, "E", bytes([4]))]
        elif label == "garbage":                      # 0xA5 0x00 then quiet: a frame cut off
            assert kinds == [(0, "E", bytes([4]))]
        elif label in ("good", "repeat"):
            assert kinds == [(seq, "K", b"")]
        elif label == "unknown":
            assert kinds == [(seq, "E", bytes([3]))]
        elif label == "bad count":
            assert kinds == [(seq, "E", bytes([2]))]
        elif label == "read":
            assert len(kinds) == 1 and kinds[0][:2] == (seq, "R")
            results.append(kinds[0][2])
        elif label == "read again":
            assert kinds == [(seq, "R", results[-1])]
    values = [beats.result_values(config, int.from_bytes(b, "little")) for b in results]
    assert np.array_equal(np.array(values), expected)


def test_descriptor_and_credits():
    config = ArrayConfig(rows=3, cols=2, alpha=4, act_signed=False, max_batch=300, double_buffer=False)
    d = link_descriptor(config, credits=link_credits(config), max_weight_beats=17, max_act_beats=5,
                        frame_timeout=300)
    assert d[:3] == b"SG\x05" and len(d) == DESCRIPTOR_BYTES == 20
    assert list(d[3:9]) == [2, 1, 3, 8, 8, 32] and d[9] == 0b010
    assert int.from_bytes(d[10:12], "little") == 299
    assert int.from_bytes(d[12:14], "little") == config.result_buffer - 1     # the array's result FIFO
    assert result_frame_bytes(config.result_beat_width) == 3 + 12 + 2
    assert d[14:16] == b"\x00\x00"           # no term budgets: integer cells
    assert d[16:18] == bytes([17, 5]) and int.from_bytes(d[18:], "little") == 300
    tq = ArrayConfig(rows=3, cols=2, alpha=4, mac="tq", weight_terms=2, data_terms=3)
    d = link_descriptor(tq, credits=7, max_weight_beats=1, max_act_beats=1, frame_timeout=64)
    assert d[9] == 0b1111 and d[14:16] == b"\x02\x03"
    serial = ArrayConfig(rows=3, cols=2, alpha=4, mac="tq-serial", weight_terms=1, data_terms=2)
    d = link_descriptor(serial, credits=7, max_weight_beats=1, max_act_beats=1, frame_timeout=64)
    assert d[9] == 0b11111 and d[14:16] == b"\x01\x02"
    from software.host import Descriptor
    assert Descriptor.parse(d).mismatches(serial) == []
    assert Descriptor.parse(d).mismatches(dataclasses.replace(serial, mac="tq")) == ["mac: board tq-serial vs configuration tq"]
    link = HostLink(ArrayConfig(rows=4, cols=4, alpha=4), divisor=104)
    # A 512-byte frame buffer: 17-byte activation beats, 5-byte weight beats; 12 result FIFO entries.
    assert (link.max_act_beats, link.max_weight_beats, link.credits) == (30, 102, 11)
    # A beat wider than the default buffer gets a bigger one by default: 64 columns of 8 x 8 bits.
    wide = HostLink(ArrayConfig(rows=2, cols=64, alpha=8), divisor=104)
    assert (wide.rx_buffer, wide.max_act_beats, wide.credits) == (1024, 1, wide.config.result_buffer - 1)


@pytest.mark.parametrize("kwargs, message", [
    (dict(divisor=2), "divisor must be at least 4"),
    (dict(divisor=8, rx_buffer=0), "rx_buffer must be at least 1"),
    (dict(divisor=8, rx_buffer=48), "rx_buffer must be a power of two, not 48"),
    (dict(divisor=8, rx_buffer=4), r"rx_buffer must hold a frame of one beat \(5 bytes\), not 4"),
    (dict(divisor=8, rx_buffer=True), "rx_buffer must be an integer"),
    (dict(divisor=8, frame_timeout=0), "frame_timeout must be at least 1"),
])
def test_bad_arguments(kwargs, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)    # never built: that is the point
        with pytest.raises(ValueError, match=message):
            HostLink(ArrayConfig(rows=2, cols=2), **kwargs)
        gc.collect()
