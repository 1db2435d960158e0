"""Will a model accelerator fit a board's block RAM? Checked before minutes of synthesis.

The accelerator's memories (hdl/accel/, spec/model.py) and the block RAMs each would take, at the
cheapest of the block's width x depth shapes (a memory W bits wide and D deep takes
ceil(W / w) * ceil(D / d) blocks of shape w x d). Memories shallower than the family's SHALLOW
entries are left to logic -- flip-flops on the iCE40 (where Yosys puts anything deeper into EBR:
the iCEBreaker's 2x1 digits accelerator needed 35 EBR, this estimate says 34), LUT RAM on the ECP5,
where Yosys puts memories of a few hundred entries (the OrangeCrab's 4x4 digits accelerator: its 32 activation lanes
of 128 entries in 685 LUT RAM cells, 4 block RAMs in all). The estimate is checked against the
device's blocks; what Yosys and nextpnr then build is reported by the build.
"""

import math


# Block shapes (width, depth) of each family's block RAM, as Yosys maps them.
BLOCK_SHAPES = {
    "ice40": ((16, 256), (8, 512), (4, 1024), (2, 2048)),
    "ecp5": ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384)),
}
SHALLOW = {"ice40": 8, "ecp5": 512}
FRAME_BUFFER = (8, 512)


def memories(config):
    """(name, width, depth) of the accelerator's memories and the host link's frame buffer."""
    return [*config.memories(), ("link frame buffer", *FRAME_BUFFER)]


def blocks(family, width, depth):
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in BLOCK_SHAPES[family])


def block_ram_needed(board, config):
    """Block RAMs the accelerator needs on `board` (estimated), and (name, blocks) per memory."""
    family = board.family.name
    parts = [(name, blocks(family, w, d)) for name, w, d in memories(config) if d >= SHALLOW[family]]
    return sum(n for _, n in parts), parts


def fit_problem(board, config):
    """One line, needed vs available, if the accelerator's memories cannot fit `board`; else None."""
    ebr = {m.kind: m for m in board.memories}.get("EBR")
    needed, parts = block_ram_needed(board, config)
    if ebr is None or needed <= ebr.count:
        return None
    biggest = sorted(parts, key=lambda p: -p[1])[:3]
    return (f"the model accelerator does not fit the {board.device}: it needs about {needed} block RAMs (EBR), "
            f"the device has {ebr.count} (largest: " + ", ".join(f"{name} {n}" for name, n in biggest) + ")")
