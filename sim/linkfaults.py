"""Faults on the host link's serial line, for the cocotb bench (sim/tb_hostlink.py), and the table
of what became of them.

A fault hits one frame on its way: host -> board, a frame as the driver wrote it; board -> host, a
burst of reply bytes (the bench cuts the board's output into bursts at idle gaps, a reply each).
"""

import random

FAULT_KINDS = ("bit_flip", "drop", "duplicate", "truncate", "garbage")
DIRECTIONS = ("host->board", "board->host")
OUTCOMES = ("correct", "clear_error", "wrong")
START = 0xA5


class FaultInjector:
    """Damages frames at random: with `probability` a frame gets one fault of a kind drawn from
    `kinds`, until `limit` faults (None: no limit) since the last `start_session()`. `log` lists
    (direction, kind) of every fault, in order."""

    def __init__(self, *, seed, probability, kinds=FAULT_KINDS, directions=DIRECTIONS, limit=None):
        unknown = set(kinds) - set(FAULT_KINDS) or set(directions) - set(DIRECTIONS)
        if unknown:
            raise ValueError(f"unknown fault kinds or directions: {sorted(unknown)}")
        if not 0 <= probability <= 1:
            raise ValueError(f"probability must be in [0, 1], not {probability}")
        self.rng = random.Random(seed)
        self.probability = probability
        self.kinds = tuple(kinds)
        self.directions = tuple(directions)
        self.limit = limit
        self.log = []
        self._session_start = 0

    def start_session(self):
        self._session_start = len(self.log)

    def apply(self, direction, data):
        """`data` as it arrives at the other end."""
        data = bytes(data)
        rng = self.rng
        if (not data or direction not in self.directions or rng.random() >= self.probability
                or (self.limit is not None and len(self.log) - self._session_start >= self.limit)):
            return data
        kind = rng.choice(self.kinds)
        self.log.append((direction, kind))
        if kind == "bit_flip":
            damaged = bytearray(data)
            damaged[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            return bytes(damaged)
        if kind == "drop":
            return b""
        if kind == "duplicate":
            return data + data
        if kind == "truncate":
            return data[:rng.randrange(len(data))]          # at least the last byte is lost
        # Garbage before or after the frame; half the time it starts like a frame.
        junk = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 9)))
        if rng.random() < 0.5:
            junk = bytes([START]) + junk
        return junk + data if rng.random() < 0.5 else data + junk


def tabulate(sessions):
    """Faults by direction and kind, and the outcome of the session each fell in:
    {(direction, kind): {outcome: count}}. `sessions` are dicts with `faults` (a list of
    [direction, kind]) and `outcome` (one of OUTCOMES)."""
    table = {(d, k): dict.fromkeys(OUTCOMES, 0) for d in DIRECTIONS for k in FAULT_KINDS}
    for session in sessions:
        for direction, kind in session["faults"]:
            table[(direction, kind)][session["outcome"]] += 1
    return table
