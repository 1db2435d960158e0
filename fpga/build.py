"""Build a board bitstream of the host-linked array: Amaranth -> Yosys -> nextpnr -> packer.

Everything happens in a staging directory next to the output; only a finished build is moved into
place, so a failed build (a design that does not fit, a tool error, Ctrl-C) leaves no half-written
output behind.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

from hdl.cell import weight_stage_for
from hdl.hostlink import PROTOCOL_VERSION
from hdl.memories import NO_COLLISION, UNINITIALISED, uninitialised_script
from hdl.replicas import REPLICA
from software.output_set import output_problem, output_set
from spec.units import GENERATOR, unit_of

from . import report, toolchain
from .accel_fit import fit_problem, spram_needed
from .boards import Board
from .families import PLLError
from .top import ARRAY_CLOCK, BoardTop, make_link

NAME = "top"
BUILD_SUMMARY = "summary.json"
LINK_TOP = "sparsegen_hostlink"


# Signals that stop the build script's tools from outside the build (kill, a batch scheduler, Ctrl-C
# in another terminal, the kernel's out-of-memory killer); sh reports them as exit status 128 + N.
STOPPING_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGKILL, signal.SIGTERM)


def stopping_signal(returncode):
    """The signal of STOPPING_SIGNALS that ended the build script, from its exit status, or None."""
    for sig in STOPPING_SIGNALS:
        if returncode in (128 + sig, -sig):
            return sig
    return None


class BuildError(RuntimeError):
    """A build that cannot be done (status 2: bad input) or did not succeed (status 1).

    The message is one line."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


DSP_CHOICES = ("auto", "on", "off")


def auto_dsps(board, config):
    """How many DSP blocks "auto" may fill: all of the device's, but for an alpha > 1 array at
    most the family's `mux_fed_dsps` (28 on the ECP5, where more do not route)."""
    limit = board.family.mux_fed_dsps
    if limit is not None and config.alpha > 1:
        return min(board.dsps, limit)
    return board.dsps


def parse_dsp(text):
    """A --dsp value: "auto", "on", "off" or a number of cells N >= 0 (returned as an int)."""
    if text in DSP_CHOICES:
        return text
    if str(text).isdigit():
        return int(text)
    raise ValueError(f"--dsp wants auto, on, off or a number of cells, not {text!r}")


def dsp_cells(board, config, dsp, booth=True):
    """How many cells get their multiplier in a DSP block: `dsp` is "on" (all), "off" (none),
    "auto" (as many as the device has, see auto_dsps) or a number N (the first N cells, at most
    all of them).

    The rest become LUT multipliers. Which multipliers stay for the DSP mapper is chosen by leaving
    them out of Yosys's `booth` pass, so a partly mapped array needs `booth`; without it, Yosys maps
    every multiplier or none, and "auto" then uses the DSPs only when each cell gets one. TQ cells
    have no multiplier (they add shifted terms), so they never use DSPs. Raises BuildError (one
    line) for an N larger than the device's DSP count or an N that needs `booth` without it.
    """
    cells = config.rows * config.cols
    if config.mac_style.uses_terms or dsp == "off":
        return 0
    if dsp == "auto":
        dsps = auto_dsps(board, config)
        if cells <= dsps:
            return cells
        return dsps if booth else 0
    if dsp == "on":
        return cells
    n = min(parse_dsp(dsp), cells)
    if n > board.dsps:
        raise BuildError(f"--dsp {dsp}: the {board.device} has {board.dsps} DSP blocks", status=2)
    if not booth and n not in (0, cells):
        raise BuildError(f"--dsp {dsp} with --no-booth: without the booth pass Yosys puts every multiplier "
                         f"in a DSP block or none, so N must be 0 or all {cells} cells", status=2)
    return n


def cell_module_pattern(row, col):
    """Yosys pattern of the module Amaranth emits for cell (row, col) (hierarchical names)."""
    return f"*.array.cell_r{row}_c{col}"


def booth_script(config, n_dsp):
    """The Yosys commands, after reading the design, that turn every multiplier except those of the
    first `n_dsp` cells (row by row) into Booth-encoded adder trees.

    With DSP cells, only the cells' multipliers are candidates: the host link's own constant
    multiplications become shifts anyway, and Yosys 0.70's `booth` trips an internal assertion on
    some of them (a 3x3 alpha-8 array on the ECP5) once the cells' multipliers are left out."""
    keep = [f"{cell_module_pattern(i // config.cols, i % config.cols)}/t:$mul" for i in range(n_dsp)]
    if not keep:
        return "proc; booth"
    return (f"proc; select -set dsp_muls {' '.join(keep)}; "
            f"booth {cell_module_pattern('*', '*')}/t:$mul @dsp_muls %d")


def collision_free_script():
    """The Yosys commands (after reading the design) that leave a read undefined where it meets a
    write of the same entry in the same clock, for the memories that hdl/memories.py marks as
    never doing so: on an iCE40 Yosys otherwise emulates Amaranth's "old value" promise in LUTs
    and flip-flops on every read bit. These memories have one read and one write port, hence a
    mask of one bit (Yosys refuses another width, so a memory with more ports fails loudly)."""
    return f"proc; memory_collect; setparam -set RD_COLLISION_X_MASK 1'1 a:{NO_COLLISION}"


def replicas_script():
    """The Yosys commands (after reading the design and `proc`) that keep the registers replicated on
    purpose (hdl/replicas.py: attribute REPLICA, each copy driving a share of a fan-out) from being
    merged back into one by opt_merge: `keep` on the flip-flops that drive those wires."""
    return f"setattr -set keep 1 a:{REPLICA} %ci1:+$dff[Q] a:{REPLICA} %d"


# Wires that Yosys reads as one bit of another wire: `x[3]` next to `x`. Amaranth names the
# elements of arrays and views so.
BIT_LIKE_NAMES = "w:*[[]*"


def private_bit_names_script():
    """Yosys commands (after reading the design) that give the wires named like one bit of another
    wire (`x[3]`) private names, so that Yosys 0.70's ABC9 does not crash on them.

    ABC9 names the inputs and outputs of the netlist it maps by bit (`x[3]` for bit 3 of `x`) and,
    reintegrating the mapped netlist, joins the bits of each name back into wires: with a wire
    literally named `x[3]` next to `x`, the two collide and the join makes a wire of the wrong width
    (`Assert GetSize(conn.first) == GetSize(conn.second)` in ABC_OPS_REINTEGRATE). Whether they
    collide depends on the order of the mapped netlist's inputs, so it shows on some large designs
    only (a 4x4 alpha-8 and a 6x6 alpha-4 TQ array on the ECP5). Only a build whose ABC9 crashed
    gets these commands: the names change ABC9's result a little (a 3x3 alpha-8 TQ array maps into
    10055 rather than 9965 LUT4), and every other build is kept as it was measured."""
    return f"hierarchy -top {NAME}; flatten; rename -hide {BIT_LIKE_NAMES}"


# The modules (Amaranth's hierarchical names) that the LUT mapper maps on their own: the core
# behind the link, a model accelerator's array inside it, and the array's result FIFO. ABC9 maps a netlist for the best delay of its
# slowest path and then lets every other path grow up to that delay to save LUTs; in one netlist
# with the array's 32-bit accumulator adders (a long carry chain) it mapped the link's control
# logic 8-9 LUTs deep (the frame receiver alone maps 4 deep), and on a full iCE40 every LUT is a
# hop of 2-3 ns of routing (the iCEBreaker 4x4's critical paths). An accelerator's post-processing
# lanes stay with its sequencer: apart, the paths between them were 7 LUTs deep.
MAPPED_APART = ("*.link.array", "*.link.array.accelerator.array", "*.array.result_fifo")


def mapped_apart_script():
    """Yosys commands (after reading the design, before synthesis) that keep the MAPPED_APART
    modules out of the flattening, so that each is mapped into LUTs as a netlist of its own."""
    return f"setattr -mod -set keep_hierarchy 1 {' '.join(MAPPED_APART)}"


# After synthesis: one flat netlist again, for nextpnr and the cell counts.
FLATTEN_AFTER_MAPPING = "setattr -mod -unset keep_hierarchy; flatten; "


def classic_abc_script(board, synth_opts):
    """(synth options, commands after synthesis) that map the LUTs with Yosys's classic ABC instead
    of ABC9, on a family that has this fallback (`Family.classic_abc_luts`, the ECP5's):
    synth_lattice up to its LUT mapping, `abc` as Yosys did it before ABC9 became the only mapper
    (on the ECP5 LUT4 to LUT7, the wider ones from PFU multiplexers), then the rest of synthesis.
    Yosys 0.70 has no -noabc9 for the ECP5, and its ABC9 crashes on some large designs."""
    family = board.family
    if not family.classic_abc_luts:
        raise ValueError(f"{family.title} builds have no classic ABC fallback")
    return ([*synth_opts, "-run", ":map_luts"],
            "check -latchonly -assert; techmap -map +/lattice/latches_map.v; "
            f"abc -dress -lut {family.classic_abc_luts}; clean; "
            f"{family.synth_command} {' '.join([*synth_opts, '-top', NAME, '-run', 'map_cells:'])}\n")


def multiplier_summary(config, n_dsp, booth):
    """How the multipliers were built, e.g. "dsp", "booth" or "8 dsp + 12 booth"."""
    cells = config.rows * config.cols
    if config.mac_style.uses_terms:
        return "tq"
    soft = "booth" if booth else "lut"
    if n_dsp in (0, cells):
        return "dsp" if n_dsp else soft
    return f"{n_dsp} dsp + {cells - n_dsp} {soft}"


def min_flip_flops(config):
    """Flip-flops the array cannot do without: weight banks, input skew and the result register."""
    weights = config.rows * config.cols * config.banks * (config.weight_width + config.select_width)
    skew = sum(g + 1 for g in range(config.cols)) * config.alpha * config.act_width
    return weights + skew + config.rows * config.acc_width


def check_fits(board, config):
    """Fail fast, before minutes of synthesis, on a configuration that cannot possibly fit."""
    needed = min_flip_flops(config)
    if needed > board.flip_flops:
        raise BuildError(f"{config.rows}x{config.cols} alpha {config.alpha} does not fit the {board.device}: "
                         f"its weight banks and input skew alone need {needed} flip-flops, the device has "
                         f"{board.flip_flops}", status=2)


def link_manifest(link, *, top, verilog_text=None, board=None, baud=None):
    """What a host program needs to talk to the link: configuration, line settings, protocol."""
    manifest = {
        "generator": GENERATOR,
        "unit": "hostlink",
        "config_unit": unit_of(link.config).name,     # the configuration of what is behind the link
        "top": top,
        "config": link.config.as_dict(),
        "link": {
            "protocol_version": PROTOCOL_VERSION,
            "serial": "8N1, no flow control",
            "baud": baud,
            "divisor": link.divisor,
            "rx_buffer_bytes": link.rx_buffer,
            "credits": link.credits,
            "max_weight_beats": link.max_weight_beats,
            "max_activation_beats": link.max_act_beats,
            "frame_timeout_byte_times": link.frame_timeout,
            "descriptor": link.descriptor.hex(),
            "result_frame_bytes": link.result_frame_bytes,
            "protocol": "see docs/formats.md (the host link protocol), or the docstring of hdl/hostlink.py",
        },
        "ports": [
            {"name": "clk", "direction": "in", "width": 1},
            {"name": "rst", "direction": "in", "width": 1, "note": "synchronous, active high"},
            {"name": "rx", "direction": "in", "width": 1, "note": "serial line from the host, idle high"},
            {"name": "tx", "direction": "out", "width": 1, "note": "serial line to the host, idle high"},
        ],
    }
    if verilog_text is not None:
        manifest["verilog"] = f"{top}.v"
        manifest["verilog_sha256"] = hashlib.sha256(verilog_text.encode()).hexdigest()
    if board is not None:
        manifest["board"] = board.name
        manifest["device"] = board.device
    return manifest


def _write_json(path, data):
    with open(path, "w", newline="\n") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def check_output_dir(out_dir, marker):
    """Refuse to overwrite anything but an earlier output of the same kind (or an empty directory),
    and an output path that cannot be written (software.output_set); before any work."""
    if problem := output_problem(out_dir, marker):
        raise BuildError(problem, status=2)


def write_link_verilog(config, out_dir, *, divisor, rx_buffer=None, frame_timeout=64, program=None):
    """The host link (UART + decoder + array, or a model accelerator's `program`) as Verilog, top
    `sparsegen_hostlink`, with a manifest that sim/runner.py and any host program can read,
    written as a set. Returns the manifest."""
    from amaranth.back import verilog
    check_output_dir(out_dir, "manifest.json")     # before elaborating: a refused link is not left unused
    link = make_link(config, divisor=divisor, rx_buffer=rx_buffer, frame_timeout=frame_timeout, program=program)
    text = verilog.convert(link, name=LINK_TOP, emit_src=False)
    manifest = link_manifest(link, top=LINK_TOP, verilog_text=text)
    with output_set(out_dir, marker="manifest.json") as staging:
        with open(os.path.join(staging, f"{LINK_TOP}.v"), "w", newline="\n") as f:
            f.write(text)
        _write_json(os.path.join(staging, "manifest.json"), manifest)
    return manifest


def _empty(directory):
    """Remove what an earlier attempt left in the staging directory."""
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)


def _run_script(command, *, cwd, env, log_file, timeout=None, give_up=None, poll_seconds=5.0):
    """Run the build script in its own process group, so that an interrupted build stops the
    tools the script started too, not only the shell. Returns its exit status, None on timeout.
    `give_up` is asked every `poll_seconds` while the script runs; when it returns a reason, the
    tools are stopped and BuildError(reason) raised."""
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            left = poll_seconds if deadline is None else min(poll_seconds, deadline - time.monotonic())
            try:
                return proc.wait(timeout=max(left, 0))
            except subprocess.TimeoutExpired:
                pass
            if deadline is not None and time.monotonic() >= deadline:
                _stop_group(proc)
                return None
            reason = give_up and give_up()
            if reason:
                raise BuildError(reason)
    except BaseException:
        _stop_group(proc)
        raise


def stop_builds_on_terminate():
    """Make SIGTERM interrupt this process as Ctrl-C does. The tools of a build run in their own
    process group (so that a time limit can stop all of them), which a signal to this process does
    not reach: without this, a terminated build (`kill`, a batch scheduler) would leave Yosys or
    nextpnr running for up to hours, and its staging directory behind."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    proc.wait()


class ToolsStopped(BuildError):
    """The tools were stopped by a signal from outside the build: a fact about the machine, not
    the design, so sweeps report it and do not record the design as not fitting."""


class _StageReporter:
    """Says which tool a build is in, once per stage, from the logs the tools write."""

    def __init__(self, progress, start):
        self.progress, self.start, self.stage = progress, start, None

    def enter(self, stage):
        if self.progress and stage != self.stage:
            self.progress(f"{stage} ({(time.perf_counter() - self.start) / 60:.1f} min)")
        self.stage = stage

    def watch(self, staging):
        """Called while the tools run; returns None (it never stops a build)."""
        if self.progress:
            text = _logs(staging)
            stage = report.unfinished_stage(text)
            if stage == "synthesizing":
                stage = "synthesizing (Yosys)"
            elif "Program finished normally" in text.split("placer", 1)[-1] and "Routing" in text:
                stage = "packing the bitstream"
            self.enter(stage.split(" (")[0] if stage.startswith("routing (") else stage)
        return None


@dataclasses.dataclass(frozen=True)
class BuildResult:
    out_dir: str
    bitstream: str
    summary: dict


def _logs(staging):
    texts = []
    for name in ("build.log", f"{NAME}.tim", f"{NAME}.rpt"):
        path = os.path.join(staging, name)
        if os.path.exists(path):
            texts.append(open(path, errors="replace").read())
    return "\n".join(texts)


def _over_capacity(staging, board):
    """Why the design cannot fit, as soon as nextpnr has packed it and printed its utilisation:
    nextpnr-ecp5 does not stop there but goes on placing an over-full design, which on the
    LFE5U-85F takes many minutes."""
    path = os.path.join(staging, f"{NAME}.tim")
    if not os.path.exists(path):
        return None
    with open(path, errors="replace") as f:
        return report.over_capacity(f.read(), board.device)


# What makes a build's design: a change here changes the bitstream.
SOURCE_DIRS = ("hdl", "spec", "fpga", "software")


def source_revision(root=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))):
    """The git commit the build's sources come from, "+changes" appended when hdl/, spec/, fpga/
    or software/ differ from it; None outside a git checkout (or without git). A fit table that
    spans sessions then says which design each number is from."""
    def git(*args):
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=30)
    try:
        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode:
            return None
        changes = git("status", "--porcelain", "--untracked-files=no", "--", *SOURCE_DIRS)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+changes" if changes.returncode or changes.stdout.strip() else "")


def array_clock(board, clock_mhz):
    """The PLL setting (fpga.families.PLLSetting) that clocks the array at `clock_mhz`, or None for
    the board's own clock (`clock_mhz` None or the board's clock frequency). BuildError (status 2,
    one line) for a frequency the family's PLL cannot make."""
    if clock_mhz is None or clock_mhz * 1e6 == board.clock_hz:
        return None
    try:
        return board.pll(clock_mhz * 1e6)
    except PLLError as e:
        raise BuildError(f"cannot clock the {board.name} at {clock_mhz:g} MHz: {e}", status=2) from None


def build(board: Board, config, out_dir, *, baud, dsp="auto", booth=True, seed=None, router=None, placer=None,
          timing_weight=None, time_limit=None, progress=None, clock_mhz=None, program=None):
    """Build the bitstream into `out_dir`; returns a BuildResult. Raises BuildError (one line).

    `clock_mhz`: the array's clock; None (or the board's clock frequency): the board's clock;
    otherwise the family's PLL makes the nearest frequency it can (`array_clock`), which the
    design is constrained at, and the UART divisor is computed for.

    `dsp`: see `dsp_cells`. `booth`: multipliers that are not in DSP blocks become Booth-encoded
    adder trees (Yosys's `booth` pass, before synthesis), about 25% (iCE40) to 35% (ECP5) fewer
    LUTs than the default soft multipliers. `router`: nextpnr's router (None: its default, router1);
    `placer` its placer (None: its default, heap). `timing_weight`: the HeAP placer's weight of
    critical connections against total wire length (None: nextpnr's default, 10).
    `time_limit`: seconds after which the tools are stopped and the build fails (None: no limit).
    A design with more cells of a kind than the device is stopped once nextpnr has packed it.
    When Yosys's ABC9 LUT mapper crashes (`report.abc9_crashed`), the build is done again with ABC9
    on private names (`private_bit_names_script`) and, should that crash too on the ECP5, with the
    classic ABC mapper; the summary's `lut_mapper` says which one mapped the design
    (`Family.lut_mappers`). `progress`, if given, is called with a line whenever the build enters
    a stage (elaborating, synthesizing, placing, routing, packing), with the minutes so far.

    `program`: a model accelerator's compiled program (software.packing.program; `config` is then
    its spec.model.ModelConfig) instead of a bare array; a model whose memories cannot fit the
    board's block RAM is refused first (fpga/accel_fit.py)."""
    if timing_weight is not None and ((placer or toolchain.NEXTPNR_PLACERS[0]) != "heap" or timing_weight < 0):
        raise BuildError(f"a placer timing weight needs the heap placer, not {placer}, and a whole number >= 0",
                         status=2)
    array = config.array if program is not None else config
    check_fits(board, array)
    if program is not None:
        if problem := fit_problem(board, config):
            raise BuildError(problem, status=2)
    check_output_dir(out_dir, BUILD_SUMMARY)
    # Read before the design is elaborated: a checkout that moves during an hour of place and
    # route would otherwise be named as the source of a design it did not make.
    source = source_revision()
    pll = array_clock(board, clock_mhz)
    platform = board.make_platform()
    env = toolchain.tool_environment(platform.required_tools)
    n_dsp = dsp_cells(board, array, dsp, booth)
    try:
        top = BoardTop(config, clk_frequency=platform.default_clk_frequency, baud=baud, pll=pll,
                       family=board.family, dsp_cells=n_dsp, program=program)
    except ValueError as e:
        raise BuildError(str(e), status=2) from None
    synth_opts = board.family.synth_opts(dsps=n_dsp > 0)
    nextpnr_opts = ["--report", "report.json", "--timing-allow-fail"]
    if seed is not None:
        nextpnr_opts += ["--seed", str(seed)]
    if router is not None:
        if router not in toolchain.NEXTPNR_ROUTERS:
            raise BuildError(f"router must be one of {', '.join(toolchain.NEXTPNR_ROUTERS)}, not {router!r}", status=2)
        nextpnr_opts += ["--router", router]
    if placer is not None:
        if placer not in toolchain.NEXTPNR_PLACERS:
            raise BuildError(f"placer must be one of {', '.join(toolchain.NEXTPNR_PLACERS)}, not {placer!r}", status=2)
        nextpnr_opts += ["--placer", placer]
    if timing_weight is not None:
        nextpnr_opts += ["--placer-heap-timingweight", str(timing_weight)]
    multipliers = multiplier_summary(array, n_dsp, booth)

    def plan(lut_mapper):
        opts, after_synth = list(synth_opts), ""
        after_read = [booth_script(array, n_dsp)] if booth else []
        after_read += [collision_free_script(), replicas_script()]
        apart = board.family.map_array_apart and lut_mapper != "abc"
        if apart:
            after_read.append(mapped_apart_script())
        if program is not None and config.weights_loaded:
            after_read.append(uninitialised_script([config.weight_beats * array.weight_beat_width]))
            if spram_needed(board, config):     # Yosys puts a RAM into SPRAM only when told to
                after_read.append(f'setattr -set ram_style "huge" a:{UNINITIALISED}')
        # A model accelerator's array-of-values ports (its logits, the post-processing lanes) name
        # wires like bits of others (`x[3]` beside `x`): nextpnr then sees one net driven twice.
        if lut_mapper == "abc9-private-names" or program is not None:
            after_read.append(private_bit_names_script())
        if lut_mapper == "abc":
            opts, after_synth = classic_abc_script(board, opts)
        platform = board.make_platform()       # a platform prepares one design only: one per attempt
        return platform.build(top, name=NAME, do_build=False, synth_opts=opts, nextpnr_opts=nextpnr_opts,
                              script_after_read="; ".join(after_read),
                              script_after_synth=(after_synth + (FLATTEN_AFTER_MAPPING if apart else "")
                                                  + "tee -q -o stat.json stat -json"))

    start = time.perf_counter()
    stages = _StageReporter(progress, start)
    with output_set(out_dir, marker=BUILD_SUMMARY) as staging:
        # Yosys's ABC9 LUT mapper first (synth_*'s default); the next mapper whenever ABC9 crashed.
        mappers = board.family.lut_mappers
        for lut_mapper in mappers:
            _empty(staging)
            stages.enter(f"elaborating (Amaranth) with LUT mapper {lut_mapper}")
            plan(lut_mapper).extract(staging)
            remaining = None if time_limit is None else max(time_limit - (time.perf_counter() - start), 1)
            with open(os.path.join(staging, "build.log"), "w") as log_file:
                returncode = _run_script(["sh", f"build_{NAME}.sh"], cwd=staging, env=env, log_file=log_file,
                                         timeout=remaining,
                                         give_up=lambda: stages.watch(staging) or _over_capacity(staging, board))
            if not (returncode and lut_mapper != mappers[-1] and report.abc9_crashed(_logs(staging))):
                break
        seconds = time.perf_counter() - start
        if returncode is None:
            logs = _logs(staging)
            packed = report.packed_use(logs)
            raise BuildError(f"not finished within {time_limit / 60:g} minutes: stopped while "
                             f"{report.unfinished_stage(logs)}" + (f" ({packed})" if packed else ""))
        if stopped := stopping_signal(returncode):
            raise ToolsStopped(f"the {board.family.name} toolchain was stopped by "
                               f"{signal.Signals(stopped).name} from outside the build")
        if returncode != 0:
            reason = report.failure_reason(_logs(staging), board.device)
            reason = reason or f"the {board.family.name} toolchain failed (exit status {returncode})"
            if lut_mapper != "abc9":
                reason += f" ({report.LUT_MAPPER_NOTES[lut_mapper]})"
            raise BuildError(reason)
        with open(os.path.join(staging, "report.json")) as f:
            nextpnr_report = json.load(f)
        with open(os.path.join(staging, "stat.json")) as f:
            yosys_stat = json.load(f)
        summary = {
            "board": board.name,
            "device": board.device,
            "unit": "model" if program is not None else "array",
            "config": config.as_dict(),
            "baud": baud,
            "divisor": top.divisor,
            # The array's clock: the board's, or the PLL's output; the design is constrained at it.
            "clock_mhz": top.clk_frequency / 1e6,
            "board_clock_mhz": board.clock_mhz,
            "pll": pll.as_dict() if pll else None,
            "multipliers": multipliers,
            "dsp_cells": n_dsp,
            "weight_stage": weight_stage_for(platform),
            "seed": seed,
            "router": router or toolchain.NEXTPNR_ROUTERS[0],
            "placer": placer or toolchain.NEXTPNR_PLACERS[0],
            "timing_weight": timing_weight,
            "lut_mapper": lut_mapper,
            "seconds": round(seconds, 1),
            "tools": toolchain.versions(platform.required_tools),
            "source": source,
            **report.summarize(board.family, nextpnr_report, yosys_stat,
                               array_clock=ARRAY_CLOCK if pll else None),
            "bitstream": f"{NAME}.{board.bitstream}",
        }
        _write_json(os.path.join(staging, BUILD_SUMMARY), summary)
        with open(os.path.join(staging, "report.txt"), "w", newline="\n") as f:
            f.write("\n".join(report.format_summary(summary)) + "\n")
        _write_json(os.path.join(staging, "manifest.json"),
                    link_manifest(top.link, top=NAME, board=board, baud=baud))
    return BuildResult(out_dir=out_dir, bitstream=os.path.join(out_dir, summary["bitstream"]), summary=summary)
