"""The host driver (software/host.py) against a scripted port: what it accepts, what it skips, what it
sends again, and when it gives up. The real board is in tests/sim/test_hostlink_rtl.py."""

import pytest

from software.host import (DESCRIPTOR_BYTES, PROTOCOL_VERSION, Board, Descriptor, HostLinkError, crc16, frame)
from spec import ArrayConfig

CONFIG = ArrayConfig(rows=2, cols=2, alpha=2, max_batch=4)
RESULT_BYTES = (CONFIG.result_beat_width + 7) // 8


def descriptor_bytes(config=CONFIG, version=PROTOCOL_VERSION, credits=2):
    return (b"SG" + bytes([version, config.rows - 1, config.cols - 1, config.alpha - 1, config.act_width,
                            config.weight_width, config.acc_width, 0b111]) +
            (config.max_batch - 1).to_bytes(2, "little") + credits.to_bytes(2, "little") + bytes([0, 0, 10, 4]) +
            (16).to_bytes(2, "little"))


def reply(seq, kind, body=b""):
    return frame(seq, ord(kind), body)


class ScriptedPort:
    """A port whose reads return, for each write, the scripted bytes (then nothing: a timeout)."""

    def __init__(self, answers):
        self.answers = list(answers)          # one entry per write: bytes, or a function of the frame
        self.written = []
        self.pending = bytearray()
        self.breaks = 0

    def write(self, data):
        self.written.append(bytes(data))
        answer = self.answers.pop(0) if self.answers else b""
        self.pending += answer(bytes(data)) if callable(answer) else answer
        return len(data)

    def read(self, n=1):
        data = bytes(self.pending[:n])
        del self.pending[:n]
        return data

    def send_break(self, duration):
        self.breaks += 1

    def reset_input_buffer(self):
        self.pending.clear()


def seq_of(data):
    return data[1]


def test_frames_carry_a_crc_whose_residue_is_zero():
    f = frame(7, ord("W"), b"\x01\x02\x03")
    assert f[:4] == b"\xa5\x07W\x01" and crc16(f[1:]) == 0
    assert crc16(b"123456789") == 0x29B1


def test_connect_hunts_past_garbage_damaged_and_stale_replies():
    good = lambda f: (b"\x00\xa5\x13" + reply(seq_of(f) - 1, "K") +          # garbage, a stale reply
                      bytearray(reply(seq_of(f), "D", descriptor_bytes()))[:-1] + b"\x00" +  # damaged
                      reply(seq_of(f), "D", descriptor_bytes()))
    port = ScriptedPort([good])
    board = Board(port, CONFIG)
    d = board.connect()
    assert port.breaks == 1 and d.credits == 2 and (d.max_weight_beats, d.max_act_beats) == (10, 4)
    assert board.stats.stale_replies == 1 and board.stats.damaged_replies >= 1 and board.stats.retries == 0
    assert board.stats.skipped_bytes > 0


def test_an_error_reply_or_a_timeout_sends_the_same_frame_again():
    port = ScriptedPort([lambda f: reply(seq_of(f), "E", b"\x01"), b"",
                         lambda f: reply(seq_of(f), "D", descriptor_bytes())])
    board = Board(port, CONFIG)
    board.connect()
    assert len(port.written) == 3 and port.written[0] == port.written[1] == port.written[2]
    assert board.stats.retries == 2 and board.stats.timeouts == 1 and board.stats.error_replies[1] == 1


def test_the_driver_gives_up_after_its_retries_with_one_line():
    port = ScriptedPort([b""] * 10)
    board = Board(port, CONFIG, retries=3)
    with pytest.raises(HostLinkError, match=r"'I' frame 1: no valid reply after 3 retries \(last: no reply\)"):
        board.connect()
    assert len(port.written) == 4


def test_a_reply_of_the_wrong_kind_is_refused():
    port = ScriptedPort([lambda f: reply(seq_of(f), "R", bytes(RESULT_BYTES))])
    with pytest.raises(HostLinkError, match="answered 'R' to 'I' frame"):
        Board(port, CONFIG).connect()


def test_a_repeated_result_reply_is_taken_once():
    """Two copies of one result reply (a duplicated frame): the second carries an old sequence
    number when the driver reads the next result, and is ignored."""
    r0, r1 = bytes(range(RESULT_BYTES)), bytes(range(1, RESULT_BYTES + 1))
    port = ScriptedPort([lambda f: reply(seq_of(f), "D", descriptor_bytes()),
                         lambda f: reply(seq_of(f), "K"),
                         lambda f: reply(seq_of(f), "R", r0) * 2,
                         lambda f: reply(seq_of(f), "R", r1)])
    board = Board(port, CONFIG)
    board.connect()
    board.send_activations([0, 0], emitting=True)
    results = board.take_results()
    assert len(results) == 2 and board.stats.stale_replies == 1
    assert [w[2] for w in port.written] == [ord(c) for c in "IARR"]


def test_descriptor_checks():
    assert Descriptor.parse(descriptor_bytes()).frame_timeout == 16
    with pytest.raises(HostLinkError, match=f"protocol version 2, this driver {PROTOCOL_VERSION}"):
        Descriptor.parse(descriptor_bytes(version=2))
    with pytest.raises(HostLinkError, match="not a sparsegen board"):
        Descriptor.parse(bytes(DESCRIPTOR_BYTES))
    with pytest.raises(HostLinkError, match="allows no results"):
        Descriptor.parse(descriptor_bytes(credits=0))


@pytest.mark.parametrize("batch", [0, -5, 1.5, True])
def test_self_test_refuses_a_batch_that_tests_nothing(batch):
    from software.host import self_test
    with pytest.raises(ValueError, match="batch must be a positive number"):
        self_test(Board(ScriptedPort([]), CONFIG), batch=batch)
