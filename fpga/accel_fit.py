"""Will a model accelerator fit a board's block RAM? Checked before minutes of synthesis.

The accelerator's memories (hdl/accel/, spec/model.py) and the block RAMs each would take, at the
cheapest of the block's width x depth shapes (a memory W bits wide and D deep takes
ceil(W / w) * ceil(D / d) blocks of shape w x d; the shapes are the family's, fpga/families.py).
Memories no deeper than the family's `logic_memory_depth` are left to logic -- flip-flops on the iCE40 (where Yosys puts anything deeper into EBR:
the iCEBreaker's 2x1 digits accelerator needed 35 EBR, this estimate says 34), LUT RAM on the ECP5,
where Yosys puts memories of a few hundred entries (the OrangeCrab's 4x4 digits accelerator: its 32 activation lanes
of 128 entries in 685 LUT RAM cells, 4 block RAMs in all). Weights that the host loads at start-up
(`weights_loaded`) go into SPRAM where the device has it (the iCE40UP5K: 16 bits x 16384 per block).
The estimate is checked against the device's blocks; what Yosys and nextpnr then build is reported
by the build.
"""

import math


FRAME_BUFFER = (8, 512)
SPRAM_SHAPE = (16, 16384)       # the iCE40UP5K's SB_SPRAM256KA


def memories(config):
    """(name, width, depth) of the accelerator's memories and the host link's frame buffer."""
    return [*config.memories(), ("link frame buffer", *FRAME_BUFFER)]


def blocks(family, width, depth):
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in family.block_ram_shapes)


def has_spram(board):
    return any(m.kind == "SPRAM" for m in board.memories)


def spram_needed(board, config):
    """SPRAM blocks the accelerator needs on `board`: its weight memory when the host loads it
    (`weights_loaded`) and the device has SPRAM (the build maps it there), else none."""
    if not (config.weights_loaded and has_spram(board)):
        return 0
    width, depth = SPRAM_SHAPE
    return math.ceil(config.array.weight_beat_width / width) * math.ceil(config.weight_beats / depth)


def block_ram_needed(board, config):
    """Block RAMs the accelerator needs on `board` (estimated), and (name, blocks) per memory."""
    family = board.family
    in_spram = spram_needed(board, config) > 0
    parts = [(name, blocks(family, w, d)) for name, w, d in memories(config)
             if d > family.logic_memory_depth and not (in_spram and name.startswith("weights"))]
    return sum(n for _, n in parts), parts


def fit_problem(board, config):
    """One line, needed vs available, if the accelerator's memories cannot fit `board`; else None."""
    kinds = {m.kind: m for m in board.memories}
    spram = spram_needed(board, config)
    if spram and spram > kinds["SPRAM"].count:
        return (f"the model accelerator does not fit the {board.device}: its weights need {spram} SPRAM blocks, "
                f"the device has {kinds['SPRAM'].count}")
    ebr = kinds.get("EBR")
    needed, parts = block_ram_needed(board, config)
    if ebr is None or needed <= ebr.count:
        return None
    biggest = sorted(parts, key=lambda p: -p[1])[:3]
    return (f"the model accelerator does not fit the {board.device}: it needs about {needed} block RAMs (EBR), "
            f"the device has {ebr.count} (largest: " + ", ".join(f"{name} {n}" for name, n in biggest) + ")")
