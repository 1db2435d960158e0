"""The fault injector of the host link bench (sim/linkfaults.py): each kind does what it says."""

import pytest

from sim.linkfaults import DIRECTIONS, FAULT_KINDS, FaultInjector, tabulate

FRAME = bytes(range(0xA5, 0xA5 + 12))


def always(kind, seed=0, **kwargs):
    return FaultInjector(seed=seed, probability=1.0, kinds=[kind], **kwargs)


def test_each_kind_damages_a_frame_as_named():
    for seed in range(20):
        flipped = always("bit_flip", seed).apply("host->board", FRAME)
        assert len(flipped) == len(FRAME)
        assert sum(bin(a ^ b).count("1") for a, b in zip(flipped, FRAME)) == 1
        assert always("drop", seed).apply("board->host", FRAME) == b""
        assert always("duplicate", seed).apply("host->board", FRAME) == FRAME + FRAME
        cut = always("truncate", seed).apply("host->board", FRAME)
        assert len(cut) < len(FRAME) and FRAME.startswith(cut)
        junk = always("garbage", seed).apply("board->host", FRAME)
        assert len(FRAME) < len(junk) <= len(FRAME) + 9 and (junk.startswith(FRAME) or junk.endswith(FRAME))


def test_probability_directions_limit_and_log():
    clean = FaultInjector(seed=1, probability=0.0)
    assert all(clean.apply("host->board", FRAME) == FRAME for _ in range(100)) and clean.log == []
    one_way = FaultInjector(seed=1, probability=1.0, directions=["board->host"])
    assert one_way.apply("host->board", FRAME) == FRAME and one_way.log == []
    limited = FaultInjector(seed=1, probability=1.0, kinds=["drop"], limit=2)
    assert [limited.apply("board->host", FRAME) for _ in range(3)] == [b"", b"", FRAME]
    limited.start_session()
    assert limited.apply("board->host", FRAME) == b"" and limited.log == [("board->host", "drop")] * 3
    some = FaultInjector(seed=2, probability=0.3)
    for _ in range(1000):
        some.apply("host->board", FRAME)
    assert 200 < len(some.log) < 400 and {k for _, k in some.log} == set(FAULT_KINDS)


def test_tabulate_counts_each_fault_under_its_sessions_outcome():
    sessions = [{"faults": [["host->board", "drop"], ["board->host", "garbage"]], "outcome": "correct"},
                {"faults": [["host->board", "drop"]], "outcome": "clear_error"}]
    table = tabulate(sessions)
    assert len(table) == len(DIRECTIONS) * len(FAULT_KINDS)
    assert table[("host->board", "drop")] == {"correct": 1, "clear_error": 1, "wrong": 0}
    assert table[("board->host", "garbage")]["correct"] == 1


@pytest.mark.parametrize("kwargs", [dict(kinds=["melt"]), dict(directions=["sideways"]), dict(probability=2)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        FaultInjector(seed=0, **{"probability": 0.5, **kwargs})
