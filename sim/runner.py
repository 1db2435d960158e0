"""Build generated Verilog with Verilator and run the cocotb stream testbench on it.

Amaranth has no Verilog parameters, so every configuration is its own Verilog file and its own
build directory (named by the Verilog's hash, so an unchanged design is not rebuilt).
"""

import dataclasses
import json
import os
import pathlib
import time

from software.config import ArrayConfig

from .lint import WAIVERS
from .toolchain import check_prerequisites, use_compiler, use_verilator

SIM_DIR = pathlib.Path(__file__).resolve().parent
PROJECT_ROOT = SIM_DIR.parent


# Verilator's conditional-merging pass is superlinear on the array's many enable-guarded
# registers: 150 s of a 155 s verilation of a 16x16 array, 5 s without it. The simulated
# behaviour is the same; only the C++ is organised differently.
# cocotb asks for --public-flat-rw, which makes every internal signal of a ~1M-bit design visible
# through VPI and blocks Verilator's optimizations; the testbench only touches the top's ports,
# so only those are made public (see _public_ports_control_file).
BUILD_ARGS = ["-fno-merge-cond", "--no-public-flat-rw"]

# C++ optimisation of the verilated model. The compiler, not Verilator, dominates build time
# (an 8x8 array: 2.5 s to verilate, 118 s to compile at the default -Os, 44 s at -O0), while a
# cocotb testbench spends most of each simulated clock in Python. Tests build at -O0; the
# benchmark can ask for -O2 with optimize=True.
OPT_FAST = {False: "-O0", True: "-O2"}


def _public_ports_control_file(build_dir, top):
    path = build_dir / "public_ports.vlt"
    build_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(f'`verilator_config\npublic_flat_rw -module "{top}" -var "*"\n')
    return path


def _set_optimisation(optimize):
    flags = [f for f in os.environ.get("MAKEFLAGS", "").split() if not f.startswith(("OPT_FAST=", "OPT_SLOW=", "OPT_GLOBAL="))]
    level = OPT_FAST[bool(optimize)]
    flags += [f"OPT_FAST={level}", f"OPT_SLOW={level}", f"OPT_GLOBAL={level}"]
    os.environ["MAKEFLAGS"] = " ".join(flags)


class SimulationError(AssertionError):
    pass


@dataclasses.dataclass(frozen=True)
class Build:
    build_dir: pathlib.Path
    manifest: dict
    config: object          # the unit's configuration (ArrayConfig unless build() was told otherwise)
    seconds: float          # Verilator + C++ compile time (0 when reused)

    @property
    def top(self):
        return self.manifest["top"]


def build(gen_dir, build_root="sim_build", *, always=False, optimize=False, config_type=ArrayConfig):
    """Verilate the design `python -m gen` wrote into `gen_dir` (cached by Verilog hash).

    `config_type.from_dict(manifest["config"])` becomes the Build's config: another unit (e.g.
    software.tq.TQConfig for `--unit tq`) passes its own configuration class."""
    from cocotb_tools.runner import VerilatorControlFile, Verilog, get_runner
    check_prerequisites()
    use_verilator()
    use_compiler()
    gen_dir = pathlib.Path(gen_dir)
    manifest = json.loads((gen_dir / "manifest.json").read_text())
    suffix = "_opt" if optimize else ""
    build_dir = pathlib.Path(build_root).resolve() / f"{manifest['top']}_{manifest['verilog_sha256'][:16]}{suffix}"
    binary = build_dir / manifest["top"]
    start = time.perf_counter()
    if always or not binary.exists():
        _set_optimisation(optimize)
        public = _public_ports_control_file(build_dir, manifest["top"])
        get_runner("verilator").build(
            sources=[VerilatorControlFile(WAIVERS), VerilatorControlFile(public),
                     Verilog(gen_dir / manifest["verilog"])],
            hdl_toplevel=manifest["top"], build_dir=build_dir, always=True, build_args=BUILD_ARGS,
            log_file=build_dir / "build.log")
        seconds = time.perf_counter() - start
    else:
        seconds = 0.0
    return Build(build_dir=build_dir, manifest=manifest,
                 config=config_type.from_dict(manifest["config"]), seconds=seconds)


@dataclasses.dataclass(frozen=True)
class Run:
    results: list           # result words, in stream order
    cycles: int             # first weight handshake to last result handshake, inclusive
    sim_seconds: float      # wall time inside the simulator
    total_cycles: int       # clocks simulated (including reset and drain)

    @property
    def cycles_per_second(self):
        return self.total_cycles / self.sim_seconds if self.sim_seconds else 0.0


def run_streams(built, weight_beats, activation_beats, expected_results, *, stall=0.0, seed=0,
                name="run"):
    """Drive the streams (random valid/ready stalls with probability `stall`) and check every result
    beat against `expected_results` (words). Raises SimulationError on any mismatch."""
    data = run_testbench(built, "sim.tb_array", {
        "weights": [hex(w) for w in weight_beats],
        "activations": [hex(a) for a in activation_beats],
        "expected": [hex(r) for r in expected_results],
        "stall": stall, "seed": seed,
        "latency": built.manifest["latency"],
    }, name=name)
    return Run(results=[int(r, 16) for r in data["results"]], cycles=data["cycles"],
               sim_seconds=data["sim_seconds"], total_cycles=data["total_cycles"])


def run_testbench(built, test_module, stimulus_data, *, name="run"):
    """Run the cocotb `test_module` on `built` with `stimulus_data` (JSON) in SPARSEGEN_STIMULUS;
    returns the JSON report it writes to SPARSEGEN_REPORT. Raises SimulationError on failure."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner
    run_dir = built.build_dir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    stimulus, report = run_dir / "stimulus.json", run_dir / "report.json"
    stimulus.write_text(json.dumps(stimulus_data))
    report.unlink(missing_ok=True)
    env = {"SPARSEGEN_STIMULUS": str(stimulus), "SPARSEGEN_REPORT": str(report),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    runner = get_runner("verilator")
    xml = runner.test(test_module=test_module, hdl_toplevel=built.top, hdl_toplevel_lang="verilog",
                      build_dir=built.build_dir,
                      test_dir=run_dir, extra_env=env, log_file=run_dir / "sim.log")
    tests, failed = get_results(xml)
    data = json.loads(report.read_text()) if report.exists() else {}
    if failed or not tests or not data:
        raise SimulationError(data.get("error") or f"cocotb run failed; see {run_dir / 'sim.log'}")
    return data
