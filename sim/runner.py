"""Build generated Verilog with Verilator and run the cocotb stream testbench on it.

Amaranth has no Verilog parameters, so every configuration is its own Verilog file and its own
build directory. Builds live in one cache (see cache_root) under a key made of the Verilog's
content and everything else that goes into the simulator, so an unchanged design is built once
and reused by every later run, test worker and command.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
import uuid

from spec import config_from_manifest

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


# Where builds are cached when no build root is given: $SPARSEGEN_CACHE/sim, else .cache/sim in a
# source checkout (git-ignored), else the user's cache directory (an installed package).
CACHE_ENV = "SPARSEGEN_CACHE"

# Bump when the layout of a cached build changes, so that old entries are not reused.
CACHE_FORMAT = 1

# What a finished build keeps: the simulator and the log of how it was made. The rest (C++ sources,
# objects, two ~70 MB precompiled headers) is only needed to build again, which the cache never does.
KEEP = ("build.log", "public_ports.vlt", "key.json")


def cache_root():
    """The directory under which simulator builds (and generated designs for sims) are cached."""
    if os.environ.get(CACHE_ENV):
        return pathlib.Path(os.environ[CACHE_ENV]).expanduser().resolve() / "sim"
    if (PROJECT_ROOT / "pyproject.toml").exists():
        return PROJECT_ROOT / ".cache" / "sim"
    base = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    return base / "sparsegen" / "sim"


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive lock on the file `path` (created if needed): one process at a time builds a
    given design; the others wait and then reuse its build. Without fcntl (Windows) it does not
    lock, and the atomic rename in build() still keeps every build directory whole."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def build_key(verilog, top, *, optimize=False):
    """What decides the simulator: the Verilog's actual bytes (not the hash its manifest claims, so
    a replaced file is never matched to an old simulator), the top, the build options, the lint
    waivers, and the Verilator, cocotb and C++ compiler used (the binary links cocotb's libraries
    by absolute path). Returns the dict; its sha256 names the build."""
    from importlib.metadata import version

    import cocotb_tools.config
    from .toolchain import find_cxx
    return {"format": CACHE_FORMAT, "verilog_sha256": _sha256(verilog), "top": top,
            "build_args": BUILD_ARGS, "opt": OPT_FAST[bool(optimize)], "waivers_sha256": _sha256(WAIVERS),
            "verilator": version("verilator"), "cocotb": version("cocotb"),
            "cocotb_libs": str(cocotb_tools.config.libs_dir), "cxx": find_cxx()}


# Verilator's runtime (verilated.cpp, verilated_vpi.cpp, verilated_threads.cpp, ...) is compiled
# into every build with the same command: four fifths of a small design's build time. Verilator's
# makefile prefixes every compile with $(OBJCACHE) (meant for ccache); this one caches only the
# runtime's objects, under the whole command line, the source's bytes and the compiler's identity,
# and runs every other compile (the design's own C++) unchanged. It is written into the cache as a
# standalone script, because make runs it, perhaps without this package on its path.
OBJCACHE_SCRIPT = """\
import hashlib, os, shutil, subprocess, sys
store, cmd = sys.argv[1], sys.argv[2:]
include = os.path.join(os.environ.get("VERILATOR_ROOT", "/nonexistent"), "include") + os.sep
source = cmd[-1] if cmd else ""
if "-o" not in cmd or not source.endswith(".cpp") or not os.path.abspath(source).startswith(include):
    os.execvp(cmd[0], cmd)
out = cmd.index("-o") + 1
compiler = os.path.realpath(shutil.which(cmd[0]) or cmd[0])
stat = os.stat(compiler)
key = hashlib.sha256("\\0".join(cmd[:out] + cmd[out + 1:] + [compiler, str(stat.st_size), str(stat.st_mtime_ns)])
                     .encode() + open(source, "rb").read()).hexdigest()
cached = os.path.join(store, key + ".o")
if os.path.exists(cached):
    shutil.copyfile(cached, cmd[out])
    sys.exit(0)
status = subprocess.call(cmd)
if status == 0:
    os.makedirs(store, exist_ok=True)
    shutil.copyfile(cmd[out], f"{cached}.{os.getpid()}")
    os.replace(f"{cached}.{os.getpid()}", cached)
sys.exit(status)
"""


@contextlib.contextmanager
def _runtime_object_cache(key):
    """Set OBJCACHE for the builds inside (unless the user set one, e.g. ccache, or a path has a space
    that make would split). The runtime's objects live in the cache even for a build given its own
    build root."""
    runtime = cache_root() / "runtime"
    script = runtime / "objcache.py"
    store = runtime / hashlib.sha256(json.dumps([key["verilator"], key["cxx"]]).encode()).hexdigest()[:16]
    command = f"{sys.executable} {script} {store}"
    if os.environ.get("OBJCACHE") or len(command.split()) != 3:
        yield
        return
    if not script.exists() or script.read_text() != OBJCACHE_SCRIPT:
        script.parent.mkdir(parents=True, exist_ok=True)
        partial = script.with_name(f".objcache-{uuid.uuid4().hex[:8]}.py")
        partial.write_text(OBJCACHE_SCRIPT)
        partial.replace(script)
    os.environ["OBJCACHE"] = command
    try:
        yield
    finally:
        del os.environ["OBJCACHE"]


def _prune(build_dir, top):
    for path in build_dir.iterdir():
        if path.name not in (top, *KEEP):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


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
    config: object          # the unit's spec configuration, from the manifest
    seconds: float          # Verilator + C++ compile time (0 when reused)

    @property
    def top(self):
        return self.manifest["top"]


class ManifestError(ValueError):
    """A generated directory whose manifest cannot be read or trusted. One line, naming the file."""


def read_manifest(gen_dir):
    """(manifest, configuration) of the design in `gen_dir`, validated (spec.config_from_manifest),
    with the Verilog it names present beside it."""
    path = pathlib.Path(gen_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_bytes().decode(), parse_constant=_reject_constant)
        config = config_from_manifest(manifest)
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file (generate the design with python -m gen)") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:    # ConfigError and JSONDecodeError are ValueErrors
        reason = e.strerror if isinstance(e, OSError) else str(e).strip().splitlines()[0]
        raise ManifestError(f"{path}: not a valid manifest ({reason})") from None
    if "verilog" not in manifest or not (pathlib.Path(gen_dir) / manifest["verilog"]).is_file():
        raise ManifestError(f"{path}: the Verilog it names is not beside it")
    return manifest, config


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def build(gen_dir, build_root=None, *, always=False, optimize=False):
    """Verilate the design gen/ wrote into `gen_dir`, or reuse the build of the same design (see
    build_key) from `build_root` (default: cache_root()). `always` builds anew. The Build's
    config is the manifest's, read as the configuration of the unit the manifest names."""
    from cocotb_tools.runner import VerilatorControlFile, Verilog, get_runner
    check_prerequisites()
    use_verilator()
    use_compiler()
    gen_dir = pathlib.Path(gen_dir)
    manifest, config = read_manifest(gen_dir)
    top, verilog = manifest["top"], gen_dir / manifest["verilog"]
    key = build_key(verilog, top, optimize=optimize)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    root = pathlib.Path(build_root).resolve() if build_root is not None else cache_root()
    build_dir = root / f"{top}_{digest[:16]}{'_opt' if optimize else ''}"
    seconds = 0.0
    with locked(root / "locks" / f"{build_dir.name}.lock"):
        if always or not (build_dir / top).exists():
            start = time.perf_counter()
            # A long step: say what is happening (on stderr, so outputs stay clean).
            print(f"verilating {verilog.name} ({top}); the simulator is cached in {build_dir}",
                  file=sys.stderr, flush=True)
            # Build beside the final place and rename: a crash or a kill never leaves a directory
            # that looks finished, and a reader never sees one half written.
            partial = root / f".partial-{build_dir.name}-{uuid.uuid4().hex[:8]}"
            try:
                _set_optimisation(optimize)
                public = _public_ports_control_file(partial, top)
                (partial / "key.json").write_text(json.dumps(key, indent=1, sort_keys=True))
                try:
                    with _runtime_object_cache(key):
                        get_runner("verilator").build(
                            sources=[VerilatorControlFile(WAIVERS), VerilatorControlFile(public), Verilog(verilog)],
                            hdl_toplevel=top, build_dir=partial, always=True, build_args=BUILD_ARGS,
                            log_file=partial / "build.log")
                except RuntimeError as e:      # cocotb: "Command failed with return code: N"
                    log = root / "failed" / f"{build_dir.name}.log"
                    log.parent.mkdir(exist_ok=True)
                    if (partial / "build.log").exists():
                        shutil.copyfile(partial / "build.log", log)
                    raise RuntimeError(f"building the simulator of {verilog} failed ({e}); see {log}") from None
                _prune(partial, top)
                if build_dir.exists():
                    old = root / f".old-{build_dir.name}-{uuid.uuid4().hex[:8]}"
                    build_dir.rename(old)
                    shutil.rmtree(old, ignore_errors=True)
                partial.rename(build_dir)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
            seconds = time.perf_counter() - start
    return Build(build_dir=build_dir, manifest=manifest, config=config, seconds=seconds)


@dataclasses.dataclass(frozen=True)
class Run:
    results: list           # result words, in stream order
    cycles: int             # first weight handshake to last result handshake, inclusive
    sim_seconds: float      # wall time inside the simulator
    total_cycles: int       # clocks simulated (including reset and drain)

    @property
    def cycles_per_second(self):
        return self.total_cycles / self.sim_seconds if self.sim_seconds else 0.0


def stream_ports(manifest):
    """(input stream names, output stream names) of a unit, in the manifest's order."""
    streams = [p for p in manifest["ports"] if p.get("protocol") == "valid/ready"]
    return ([p["name"] for p in streams if p["direction"] == "in"],
            [p["name"] for p in streams if p["direction"] == "out"])


def run_streams(built, inputs, expected, *, stall=0.0, seed=0, budget=None, work=0, reset_after=None,
                name="run"):
    """Drive any unit's input streams with `inputs` ({stream name: words}) and check every beat of
    its output stream against `expected` (words), with random valid/ready stalls of probability
    `stall` on every stream (sim/tb_streams.py). The stream names come from the manifest.

    `budget`: most clocks before the run counts as hung (default: every beat stalled many times
    over, plus `work` clocks the unit spends computing). `reset_after`: reset the unit once that
    many output beats were taken and replay everything; the replay must be exact.
    Returns a Run; raises SimulationError on any mismatch, lost, extra or late beat."""
    ins, outs = stream_ports(built.manifest)
    if sorted(inputs) != sorted(ins) or len(outs) != 1:
        raise ValueError(f"{built.top} has input streams {ins} and output streams {outs}; "
                         f"the stimulus gives {sorted(inputs)}")
    beats = sum(len(w) for w in inputs.values()) + len(expected)
    if budget is None:
        budget = (beats + built.manifest["latency"] + 10) * 50 + 4 * work
    data = run_testbench(built, "sim.tb_streams", {
        "inputs": {stream: [hex(w) for w in inputs[stream]] for stream in ins},
        "output": outs[0], "expected": [hex(e) for e in expected],
        "stall": stall, "seed": seed, "budget": budget * (2 if reset_after is not None else 1),
        "drain": built.manifest["latency"] + 8 + getattr(built.config, "max_work", 0), "reset_after": reset_after,
    }, name=name)
    if reset_after is not None and not data.get("reset_done"):
        raise SimulationError(f"the run ended before {reset_after} output beats: the reset was never applied")
    return Run(results=[int(r, 16) for r in data["results"]], cycles=data["cycles"],
               sim_seconds=data["sim_seconds"], total_cycles=data["total_cycles"])


def run_testbench(built, test_module, stimulus_data, *, name="run"):
    """Run the cocotb `test_module` on `built` with `stimulus_data` (JSON) in SPARSEGEN_STIMULUS;
    returns the JSON report it writes to SPARSEGEN_REPORT. Raises SimulationError on failure."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner
    # Each run gets its own directory (runs of one cached build may happen at the same time in
    # several processes); it is removed after a passing run and kept, with its log, after a failure.
    runs = built.build_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix=f"{name}-", dir=runs))
    stimulus, report = run_dir / "stimulus.json", run_dir / "report.json"
    stimulus.write_text(json.dumps(stimulus_data))
    env = {"SPARSEGEN_STIMULUS": str(stimulus), "SPARSEGEN_REPORT": str(report),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    runner = get_runner("verilator")
    xml = runner.test(test_module=test_module, hdl_toplevel=built.top, hdl_toplevel_lang="verilog",
                      build_dir=built.build_dir,
                      test_dir=run_dir, extra_env=env, log_file=run_dir / "sim.log")
    tests, failed = get_results(xml)
    data = json.loads(report.read_text()) if report.exists() else {}
    if failed or not tests or not data:
        raise SimulationError(f"{data.get('error') or 'cocotb run failed'}; see {run_dir / 'sim.log'}")
    shutil.rmtree(run_dir, ignore_errors=True)
    return data
