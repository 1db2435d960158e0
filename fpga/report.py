"""Resource and timing reports from nextpnr's JSON report (`--report`) and Yosys's `stat -json`.

nextpnr counts what the placed design occupies on the device; Yosys counts the mapped cells.
LUTs and flip-flops come from the packed design where the device reports them separately (ECP5:
TRELLIS_COMB, TRELLIS_FF); an iCE40 logic cell holds one LUT4 and one flip-flop, so there nextpnr's
logic cells are the capacity that runs out, and the LUT4 and flip-flop counts come from Yosys.
"""

import re

from . import families


def _cells(stat):
    return stat.get("design", stat)["num_cells_by_type"]


def summarize(family, nextpnr_report, yosys_stat, array_clock=None):
    """{'resources': {name: {'used', 'available'}}, 'fmax': {clock: {...}}, 'array_clock': name,
    'critical_path': {...} or None, 'split_paths': {...} or None, 'timing_pass': bool}.

    `family`: a fpga.families.Family or its name; which resources come from nextpnr's bels and
    which from Yosys's cells is the family's (`Family.placed`, `Family.mapped`). `array_clock`: the
    name of the array's clock net (the PLL's output), None for the board's clock (see
    `find_array_clock`). Timing passes when every clock meets its constraint, the array's included."""
    family = families.family(family)
    util = nextpnr_report["utilization"]

    def bel(kind):
        entry = util.get(kind, {"used": 0, "available": 0})
        return {"used": int(entry["used"]), "available": int(entry["available"])}

    cells = _cells(yosys_stat)
    placed = {name: bel(kind) for name, kind in family.placed}
    resources = {}
    for name, prefix, capacity in family.mapped:
        resources[name] = {"used": sum(int(n) for c, n in cells.items() if c.startswith(prefix)),
                           "available": placed[capacity]["available"]}
    resources.update(placed)

    fmax = {}
    for clock, entry in nextpnr_report.get("fmax", {}).items():
        name = clock_name(clock)
        achieved, constraint = float(entry["achieved"]), float(entry["constraint"])
        fmax[name] = {"achieved_mhz": round(achieved, 2), "constraint_mhz": round(constraint, 2),
                      "pass": achieved >= constraint}
    clock = find_array_clock(fmax, array_clock)
    return {
        "resources": resources,
        "fmax": fmax,
        "array_clock": clock,
        "critical_path": critical_path(nextpnr_report, clock) if clock else None,
        "split_paths": split_paths(nextpnr_report, clock, fmax) if clock else None,
        "timing_pass": clock is not None and all(f["pass"] for f in fmax.values()),
    }


def split_paths(nextpnr_report, clock, fmax):
    """Paths of `clock` that nextpnr times in two halves, through a cell it takes for clocked on a
    clock without an Fmax of its own: nextpnr-ice40 times a combinational SB_MAC16 (its registers
    bypassed, CLK tied low) as clocked by "$PACKER_GND_NET_$glb_clk", so a path through the DSP
    ends at its inputs and starts again at its outputs, and neither half is in `critical_path`.
    {'clock', 'into_ns', 'out_ns', 'bound_ns'}: the worst half into such cells, the worst out of
    them and their sum, which bounds the whole path; None without such paths."""
    into, out, other = 0.0, 0.0, None
    for path in nextpnr_report.get("critical_paths", []):
        start, end = (clock_name(path[side]) for side in ("from", "to"))
        delay = sum(segment["delay"] for segment in path["path"])
        if start == clock and end not in fmax and end != "<async>":
            into, other = max(into, delay), end
        elif end == clock and start not in fmax and start != "<async>":
            out, other = max(out, delay), start
    if other is None:
        return None
    return {"clock": other, "into_ns": round(into, 3), "out_ns": round(out, 3), "bound_ns": round(into + out, 3)}


def clock_name(name):
    """A clock as the summary names it: nextpnr's clock event ("posedge $glbnet$clk") without the
    edge and the global-buffer prefix ("clk")."""
    return re.sub(r"^\$glbnet\$", "", re.sub(r"^(?:pos|neg)edge ", "", name))


def find_array_clock(fmax, array_clock=None):
    """The array's clock among the clocks of a report's `fmax` (summary names): `array_clock` when
    given (the PLL's output), otherwise the only clock, or the one of Amaranth's "sync" domain;
    None if there is none such (nextpnr found no constrained clock of that name)."""
    if array_clock is not None:
        return array_clock if array_clock in fmax else None
    if len(fmax) == 1:
        return next(iter(fmax))
    sync = [name for name in fmax if "sync" in name]
    return sync[0] if len(sync) == 1 else None


# Segments of a nextpnr critical path that are inside cells (the rest, "routing", is wires).
CELL_SEGMENTS = ("clk-to-q", "source", "logic", "setup")
# Input ports of the carry chains (ECP5 CCU2C: FCI; iCE40 logic cell: CIN): a logic segment from
# one is a step along an adder's carry chain, not a level of LUTs.
CARRY_INPUTS = ("FCI", "CIN", "CI")
# Where Yosys and nextpnr append to a name of the design the primitives they made of it:
# `link.receiver.timer_SB_DFFESR_Q_3_D_SB_LUT4_O_LC` is a logic cell of link.receiver.timer.
_PRIMITIVE_SUFFIX = re.compile(r"_(?:SB_|TRELLIS_|ICESTORM_|DP16KD|PDPW16KD|MULT18X18D|ALU54B|CCU2C|LUT4|"
                               r"PFUMX|L6MUX21|DPR16X4C|DFF)")


def short_name(name):
    """A design name without the primitives appended to it ("link.receiver.timer"), or None for
    a name Yosys made up ("$abc$123$...")."""
    name = _PRIMITIVE_SUFFIX.split(name, 1)[0]
    return None if not name or name.startswith("$") else name


def critical_path(nextpnr_report, clock):
    """The worst path from `clock` to `clock` in nextpnr's report (its `critical_paths`), summarized:
    {'clock', 'from', 'to', 'to_port', 'from_cell', 'to_cell', 'delay_ns', 'logic_ns', 'routing_ns',
    'logic_levels', 'carry_steps', 'through'}: start and end as design names (`short_name`, else
    the nets next to them), the delay inside cells (clock-to-out, LUTs, carries, DSPs, setup) and
    on wires, the logic levels (LUTs, DSPs, the entry into a carry chain) and the steps along carry
    chains, and the parts of the design its logic cells are named after, in order (Yosys names a
    LUT after a net near it, so this is a hint, not a proof). None without such a path."""
    paths = [p for p in nextpnr_report.get("critical_paths", [])
             if clock_name(p["from"]) == clock_name(p["to"]) == clock and p["path"]]
    if not paths:
        return None
    path = max(paths, key=lambda p: sum(segment["delay"] for segment in p["path"]))["path"]
    nets = [segment["net"] for segment in path if segment.get("net")]
    first, last = path[0]["from"], path[-1]["to"]

    def named(cell, net):
        return short_name(cell) or (short_name(net) if net else None) or cell
    logic = sum(s["delay"] for s in path if s["type"] in CELL_SEGMENTS)
    routing = sum(s["delay"] for s in path if s["type"] not in CELL_SEGMENTS)
    through = []
    for segment in path:
        if segment["type"] == "logic":
            part = (short_name(segment["from"]["cell"]) or "").rpartition(".")[0]
            if part and (not through or through[-1] != part):
                through.append(part)
    return {
        "clock": clock,
        "from": named(first["cell"], nets[0] if nets else None),
        "to": named(last["cell"], nets[-1] if nets else None),
        "to_port": last["port"],
        "from_cell": first["cell"],
        "to_cell": last["cell"],
        "delay_ns": round(logic + routing, 3),
        "logic_ns": round(logic, 3),
        "routing_ns": round(routing, 3),
        "logic_levels": sum(1 for s in path if s["type"] == "logic" and s["from"]["port"] not in CARRY_INPUTS),
        "carry_steps": sum(1 for s in path if s["type"] == "logic" and s["from"]["port"] in CARRY_INPUTS),
        "through": through,
    }


def describe_split_paths(split, path):
    """One line on the paths nextpnr timed in two halves (see split_paths)."""
    longest = path["delay_ns"] if path else 0
    verdict = ("within the critical path" if split["bound_ns"] <= longest
               else "LONGER than the critical path: the Fmax above may be too high")
    return (f"  paths through cells nextpnr clocks by {split['clock']} (combinational DSPs) are timed in two "
            f"halves: {split['into_ns']:.2f} ns in + {split['out_ns']:.2f} ns out = at most {split['bound_ns']:.2f} ns, "
            f"{verdict}")


def describe_critical_path(path):
    """Lines for a report: start -> end, the delay split into logic and routing, the levels."""
    if not path:
        return ["  critical path: none reported"]
    total = path["delay_ns"] or 1
    lines = [f"  critical path ({path['clock']}): {path['from']} -> {path['to']} ({path['to_port']}): "
             f"{path['delay_ns']:.2f} ns = {path['logic_ns']:.2f} ns logic ({100 * path['logic_ns'] / total:.0f}%) + "
             f"{path['routing_ns']:.2f} ns routing ({100 * path['routing_ns'] / total:.0f}%), "
             f"{path['logic_levels']} logic levels" + (f" + {path['carry_steps']} carry steps"
                                                       if path.get("carry_steps") else "")]
    if path.get("through"):
        lines.append(f"    via cells that Yosys named after {', '.join(path['through'])}")
    return lines


_LABELS = {"luts": "LUT4", "flip_flops": "flip-flops", "logic_cells": "logic cells",
           "block_ram": "block RAM", "spram": "SPRAM", "dsp": "DSP", "lutram": "LUT RAM"}


_MULTIPLIERS = {"dsp": "DSP blocks", "booth": "Booth LUTs", "lut": "LUTs", "tq": "none (TQ cells add shifted terms)"}


def describe_multipliers(multipliers):
    """"8 dsp + 12 booth" -> "8 in DSP blocks + 12 in Booth LUTs"; the plain kinds by name."""
    if multipliers in _MULTIPLIERS:
        return _MULTIPLIERS[multipliers]
    return " + ".join(f"{n} in {_MULTIPLIERS[kind]}" for n, kind in
                      (part.split() for part in multipliers.split(" + ")))


# How the weights shift up a column to their cells (hdl/cell.py WEIGHT_STAGES), for the report.
_WEIGHT_STAGES = {"register": "a stage register per cell", "bank": "the bank being loaded"}


def format_summary(summary):
    """Human-readable lines of a build summary (what `python -m fpga build` prints)."""
    cfg = summary["config"]
    # Builds before the weight stage was chosen per family do not record it.
    stage = f", weights shift through {_WEIGHT_STAGES[summary['weight_stage']]}" if "weight_stage" in summary else ""
    lines = [f"{summary['board']} ({summary['device']}): {cfg['rows']}x{cfg['cols']} array, alpha {cfg['alpha']}, "
             f"{cfg['act_width']}-bit x {cfg['weight_width']}-bit, acc {cfg['acc_width']}, "
             f"multipliers: {describe_multipliers(summary['multipliers'])}{stage}, UART {summary['baud']} baud"]
    lines.append(f"  {'clock':<12} {describe_clock(summary)}")
    for name in _LABELS:
        if name not in summary["resources"]:
            continue
        r = summary["resources"][name]
        share = f" ({100 * r['used'] / r['available']:.1f}%)" if r["available"] else ""
        lines.append(f"  {_LABELS.get(name, name):<12} {r['used']:>7} / {r['available']}{share}")
    array = summary.get("array_clock")
    for clock, f in summary["fmax"].items():
        verdict = "PASS" if f["pass"] else "FAIL"
        role = "array clock, " if clock == array and len(summary["fmax"]) > 1 else ""
        lines.append(f"  Fmax {clock}: {f['achieved_mhz']:.2f} MHz ({role}constraint {f['constraint_mhz']:.2f} MHz) "
                     f"{verdict}")
    if not summary["fmax"]:
        lines.append("  Fmax: nextpnr reported no constrained clock")
    elif array is None and "array_clock" in summary:
        lines.append(f"  Fmax: nextpnr reported no Fmax for the array's clock ({', '.join(summary['fmax'])} only)")
    if "critical_path" in summary:
        lines += describe_critical_path(summary["critical_path"])
    if summary.get("split_paths"):
        lines.append(describe_split_paths(summary["split_paths"], summary.get("critical_path")))
    if summary.get("lut_mapper", "abc9") != "abc9":
        lines.append(f"  LUT mapping: {LUT_MAPPER_EXPLANATIONS[summary['lut_mapper']]}")
    return lines


def describe_clock(summary):
    """The array's clock of a build summary: the board's, or the PLL's with its setting."""
    pll = summary.get("pll")
    if not pll:
        return f"{summary['clock_mhz']:g} MHz, the board's clock"
    dividers = ", ".join(f"{name} {value}" for name, value in pll["dividers"].items())
    requested = ("" if pll["output_mhz"] == pll["requested_mhz"]
                 else f" (nearest to the {pll['requested_mhz']:g} MHz asked for)")
    return (f"{pll['output_mhz']:.6g} MHz{requested} from the board's {pll['input_mhz']:g} MHz by "
            f"{pll['primitive']} ({dividers}; VCO {pll['vco_mhz']:.6g} MHz); constrained at {pll['output_mhz']:.6g} MHz")


# Why a build's LUTs were not mapped by plain ABC9 (`Family.lut_mappers`): a note for one-line
# failure reasons, and a sentence for the report.
LUT_MAPPER_NOTES = {
    "abc9-private-names": "LUTs mapped by ABC9 on private names: it crashed on the design's names",
    "abc": "LUTs mapped by the classic ABC: ABC9 crashed",
}
LUT_MAPPER_EXPLANATIONS = {
    "abc9-private-names": "Yosys's ABC9 crashed on this design's wire names (`x[3]` next to `x`); "
                          "mapped with ABC9 after giving those wires private names",
    "abc": "Yosys's ABC9 crashed on this design, also on private names; mapped with the classic ABC "
           "(`abc -lut 4:7`)",
}


def over_capacity(log_text, device):
    """One line saying which cells the design has more of than the device, from nextpnr's
    utilisation table (printed once packing is done), or None while none is over."""
    over = []
    for kind, used, available in re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)", log_text, re.M):
        if int(used) > int(available):
            over.append(f"{used} of {available} {kind}")
    return f"the design does not fit the {device}: it needs " + ", ".join(over) if over else None


# The logic cells that run out first: the fit sweep's resource model counts these.
LOGIC_CELLS = ("ICESTORM_LC", "TRELLIS_COMB")


def packed_use(log_text):
    """"packed N of M KIND": how many logic cells nextpnr's utilisation table (printed once packing
    is done) gives the design, or None before packing. A build that then fails to place, or does
    not finish, still says how large the design is (benchmarks/fpga_fit.py fits its resource
    model to it)."""
    for kind, used, available in re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)", log_text, re.M):
        if kind in LOGIC_CELLS:
            return f"packed {used} of {available} {kind}"
    return None


# nextpnr's errors for a design it packed but cannot place: the device is too small for it.
PLACEMENT_FAILURES = ("legal placement", "Unable to place", "no BELs remaining")


def failure_reason(log_text, device):
    """One line saying why nextpnr or Yosys failed, from their log."""
    over = over_capacity(log_text, device)
    if over:
        return over
    errors = re.findall(r"^(?:ERROR|Error):\s*(.+)$", log_text, re.M)
    if errors:
        reason = errors[0].strip()
        if any(phrase in reason for phrase in PLACEMENT_FAILURES):
            reason = f"the design does not fit the {device}: {reason}"
        if packed := packed_use(log_text):
            reason += f" ({packed})"
        return reason
    return None


def abc9_crashed(log_text):
    """Whether Yosys stopped on an internal assertion inside its ABC9 LUT mapping (Yosys 0.70's
    reintegration of the mapped netlist fails so on some large designs, e.g. a 4x4 alpha-8 TQ array
    on the ECP5, when wire names collide: see `build.private_bit_names_script`)."""
    error = re.search(r"^ERROR: Assert .* failed", log_text, re.M)
    if not error:
        return False
    passes = re.findall(r"^[\d.]+ Executing (\S+)", log_text[:error.start()], re.M)
    return bool(passes) and "ABC" in passes[-1].upper()


def unfinished_stage(log_text):
    """Where a build stopped before its end was, from Yosys's and nextpnr's logs: routing (with the
    wires still overused), placing, or synthesizing."""
    iterations = re.findall(r"^Info:\s+iter=(\d+) .*overuse=(\d+)", log_text, re.M)
    if iterations:
        n, overuse = iterations[-1]
        return f"routing ({overuse} wires still overused after {n} router2 iterations)"
    if "Routing.." in log_text or "Running main router loop" in log_text or "Setting up routing" in log_text:
        return "routing"
    if "placer" in log_text:
        return "placing"
    return "synthesizing"
