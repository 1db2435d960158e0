"""The bad-input corpus: for every command, inputs it must refuse with one line on stderr, exit
status 2, and nothing written or changed.

Each case is ``Case(command, argv)``; ``argv`` may name files of the workspace (``Workspace``),
written as ``{name}`` placeholders: a valid packed model, files and directories in the way, a
crafted model, build directories with broken summaries. ``run_in_process`` calls the command's
``main(argv)`` (fast); ``run_subprocess`` runs it as ``python -m ...`` (the real exit status).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import subprocess
import sys

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]

MODULES = {          # command -> (module run by python -m, its main, the argv prefix)
    "compress": ("software", "software.frontend.compress:main", ["compress"]),
    "evaluate": ("software", "software.frontend.compress:main", ["evaluate"]),
    "gen": ("gen", "gen.cli:main", []),
    "gen tq": ("gen", "gen.cli:main", ["--unit", "tq"]),
    "gen attention": ("gen", "gen.cli:main", ["--unit", "attention"]),
    "sim.model": ("sim.model", "sim.model:main", []),
    "fpga build": ("fpga", "fpga.cli:main", ["build"]),
    "fpga verilog": ("fpga", "fpga.cli:main", ["verilog"]),
    "fpga program": ("fpga", "fpga.cli:main", ["program"]),
    "fpga run": ("fpga", "fpga.cli:main", ["run"]),
}


@dataclasses.dataclass(frozen=True)
class Case:
    command: str
    argv: tuple

    @property
    def id(self):
        return f"{self.command}: {' '.join(self.argv)}"


def _cases(command, *argvs):
    return [Case(command, tuple(a.split()) if isinstance(a, str) else tuple(a)) for a in argvs]


OUT = "-o {out}"
COMPRESS = _cases("compress",
    f"--alpha 0 {OUT}", f"--alpha -1 {OUT}", f"--rows 0 {OUT}", f"--rows 300 {OUT}", f"--cols 0 {OUT}", f"--cols -1 {OUT}",
    f"--max-batch 0 {OUT}", f"--quant int3 {OUT}", f"--method banana {OUT}", f"--gamma nan {OUT}",
    f"--gamma -0.5 {OUT}", f"--method magnitude --sparsity 1.5 {OUT}", f"--finetune-epochs -1 {OUT}",
    f"--epochs -1 {OUT}", f"--quant tq --term-group 0 {OUT}", f"--quant tq --data-terms 0 {OUT}",
    f"--quant tq --weight-terms 0 {OUT}", f"--quant tq --weight-terms nan {OUT}", f"--lr nan {OUT}",
    f"--lr -1 {OUT}", f"--lr inf {OUT}", f"--rows abc {OUT}", f"--model {{missing}} {OUT}",
    f"--model {{junk}} {OUT}", f"--model {{packed}} {OUT}", "--bogus 1 -o {out}", "--rows 4",
    "-o {taken}", "-o {taken}/below", "-o /proc/sparsegen-out", "-o {foreign}",
    f"--method magnitude --sparsity nan {OUT}", f"--method nm --nm 5:4 {OUT}",
)
EVALUATE = _cases("evaluate",
    "{missing}", "{junk}", "{empty}", "{truncated}", "{foreign}", "{npy}", "{crafted_input}", "{crafted_bias}",
    "{crafted_shift}", "{stale_digest}", "{packed} --extra",
)
GEN = [c for unit in ("gen", "gen tq", "gen attention") for c in _cases(unit,
    "-o {taken}", "-o {taken}/below", "-o /proc/sparsegen-out", "-o {foreign}", "--bogus -o {out}")] + \
    _cases("gen",
    f"--rows 0 {OUT}", f"--rows -3 {OUT}", f"--rows 4 --act-width -8 {OUT}", f"--rows 4 --weight-width 4096 {OUT}",
    f"--rows 4 --alpha 0 {OUT}", f"--rows 4 --alpha 1000 {OUT}", f"--rows 4 --sparsity dense --alpha 4 {OUT}",
    f"--rows 4 --sparsity banana {OUT}", f"--rows 4 --acc-width 12 {OUT}", f"--rows four {OUT}",
    f"--rows 4 --max-batch 0 {OUT}", f"--rows 4 --weight-terms 2 {OUT}", f"--rows 4 --mac tq --data-terms 9 {OUT}",
    f"--rows 4 --mac float {OUT}", f"--unit gpu {OUT}", "--unit",
) + _cases("gen tq", f"--width 1 {OUT}", f"--weight-terms 0 {OUT}", f"--form banana {OUT}") + \
    _cases("gen attention", f"--head-dim 0 {OUT}", f"--max-len -1 {OUT}", f"--data-width 64 {OUT}",
           f"--prune threshold {OUT}", f"--top-k 65 {OUT}", f"--prune banana {OUT}")
SIM_MODEL = _cases("sim.model",
    "{missing}", "{junk}", "{truncated}", "{crafted_input}", "{crafted_bias}", "{stale_digest}",
    "{packed} --images 0", "{packed} --images 100000", "{packed} --images x", "{packed} --stall 1",
    "{packed} --stall -0.1", "{packed} --stall nan", "{packed} --build-root {taken}",
    "{packed} --build-root {taken}/below", "{packed} --build-root /proc/sparsegen-cache",
)
FPGA_BUILD = _cases("fpga build",
    f"--rows 2 {OUT}", f"--board banana {OUT}", f"--board icebreaker --rows 0 {OUT}",
    f"--board icebreaker --clock-mhz -5 {OUT}", f"--board icebreaker --clock-mhz nan {OUT}",
    f"--board icebreaker --clock-mhz inf {OUT}", f"--board icebreaker --dsp banana {OUT}",
    f"--board icebreaker --dsp -1 {OUT}", f"--board icebreaker --rows 4 --dsp 9 {OUT}",
    f"--board icebreaker --dsp 1 --no-booth {OUT}",
    f"--board icebreaker --router banana {OUT}", f"--board icebreaker --rows 64 {OUT}",
    "--board icebreaker -o {taken}", "--board icebreaker -o {taken}/below",
    "--board icebreaker -o /proc/sparsegen-out", "--board icebreaker -o {foreign}",
)
FPGA_VERILOG = _cases("fpga verilog",
    f"--divisor 0 {OUT}", f"--divisor -1 {OUT}", f"--divisor x {OUT}", f"--divisor 16 --tx-buffer 0 {OUT}",
    f"--divisor 16 --rows 0 {OUT}", f"{OUT}", "--divisor 16 -o {taken}", "--divisor 16 -o {taken}/below",
    "--divisor 16 -o /proc/sparsegen-out", "--divisor 16 -o {foreign}",
)
FPGA_PROGRAM = _cases("fpga program",
    "{missing}", "{foreign}", "{taken}", "{summary_malformed}", "{summary_list}", "{summary_nan}",
    "{summary_no_board}", "{summary_bad_board}", "{summary_escape}", "{summary_absolute}", "{summary_link}",
    "{summary_no_bitstream}", "{summary_bitstream_dir}", "{summary_binary}", "",
)
FPGA_RUN = _cases("fpga run",
    "{summary_ok} --port /dev/null --batch 0", "{summary_ok} --port /dev/null --batch -5",
    "{summary_ok} --port /dev/null --batch x", "{summary_ok} --port /dev/null --batch 1000000000",
    "{missing} --port /dev/null", "{summary_malformed} --port /dev/null", "{summary_no_config} --port /dev/null",
    "{summary_bad_config} --port /dev/null", "{summary_bad_baud} --port /dev/null",
    "{summary_bool_baud} --port /dev/null", "{summary_ok}",
)
CASES = COMPRESS + EVALUATE + GEN + SIM_MODEL + FPGA_BUILD + FPGA_VERILOG + FPGA_PROGRAM + FPGA_RUN
# Run as real processes too: the exit status a shell sees.
SUBPROCESS = [COMPRESS[0], GEN[0], SIM_MODEL[3], FPGA_BUILD[-1], FPGA_PROGRAM[8], FPGA_RUN[1]]


class Workspace:
    """A directory with everything the cases name: ``paths[name]`` for every ``{name}``."""

    def __init__(self, root, packed):
        from tests.reliability import crafted
        self.root = root = pathlib.Path(root)
        root.mkdir(parents=True, exist_ok=True)
        p = self.paths = {"out": root / "out", "missing": root / "absent.npz", "packed": root / "model.npz"}
        p["packed"].write_bytes(pathlib.Path(packed).read_bytes())
        p.update(taken=root / "taken", foreign=root / "foreign", junk=root / "junk.npz", empty=root / "empty.npz",
                 truncated=root / "truncated.npz")
        p["taken"].write_text("a file in the way\n")
        p["foreign"].mkdir()
        (p["foreign"] / "notes.txt").write_text("the user's own files\n")
        p["junk"].write_bytes(b"not a zip file at all")
        p["empty"].write_bytes(b"")
        data = p["packed"].read_bytes()
        p["truncated"].write_bytes(data[: len(data) // 2])
        import numpy as np
        np.save(p.setdefault("npy", root / "array.npy"), np.zeros(3))
        for name, case in (("crafted_input", "input exponent -30"), ("crafted_bias", "bias 2**62"),
                           ("crafted_shift", "hidden shift -62")):
            members = crafted.read(p["packed"])
            crafted.CRAFTED[case][0](members)
            crafted.write(members, p.setdefault(name, root / f"{name}.npz"))
        members = crafted.read(p["packed"])
        members["layer0.bias"] = members["layer0.bias"] + 1
        crafted.write(members, p.setdefault("stale_digest", root / "stale.npz"), recompute=False)
        self._summaries()

    def _summary(self, name, text, files=()):
        d = self.root / name
        d.mkdir()
        (d / "summary.json").write_bytes(text if isinstance(text, bytes) else text.encode())
        for f in files:
            (d / f).write_text("bitstream\n")
        self.paths[name] = d

    def _summaries(self):
        from spec import ArrayConfig
        config = ArrayConfig(rows=2, cols=2, alpha=2).as_dict()
        good = {"board": "icebreaker", "bitstream": "top.bin", "config": config, "baud": 115200}
        (self.root / "outside.bin").write_text("not in the build\n")
        j = json.dumps
        self._summary("summary_ok", j(good), ["top.bin"])
        self._summary("summary_malformed", '{"board": "icebreaker", ')
        self._summary("summary_list", "[1, 2, 3]")
        self._summary("summary_nan", j({**good, "baud": float("nan")}).replace('"bitstream"', '"x": NaN, "bitstream"'))
        self._summary("summary_no_board", j({k: v for k, v in good.items() if k != "board"}), ["top.bin"])
        self._summary("summary_bad_board", j({**good, "board": "../../etc"}), ["top.bin"])
        self._summary("summary_escape", j({**good, "bitstream": "../outside.bin"}))
        self._summary("summary_absolute", j({**good, "bitstream": str(self.root / "outside.bin")}))
        self._summary("summary_link", j({**good, "bitstream": "link.bin"}))
        os.symlink(self.root / "outside.bin", self.paths["summary_link"] / "link.bin")
        self._summary("summary_no_bitstream", j(good))
        self._summary("summary_bitstream_dir", j({**good, "bitstream": "sub"}))
        (self.paths["summary_bitstream_dir"] / "sub").mkdir()
        self._summary("summary_binary", b"\xff\xfe\x00garbage")
        self._summary("summary_no_config", j({k: v for k, v in good.items() if k != "config"}))
        self._summary("summary_bad_config", j({**good, "config": {**config, "rows": 0}}))
        self._summary("summary_bad_baud", j({**good, "baud": "fast"}))
        self._summary("summary_bool_baud", j({**good, "baud": True}))

    def argv(self, case):
        names = {k: str(v) for k, v in self.paths.items()}
        return MODULES[case.command][2] + [a.format(**names) for a in case.argv]

    def snapshot(self):
        """Every path under the workspace with its content's hash (links: their target)."""
        state = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                path = pathlib.Path(dirpath) / name
                rel = str(path.relative_to(self.root))
                if path.is_symlink():
                    state[rel] = "-> " + os.readlink(path)
                elif path.is_file():
                    state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
                else:
                    state[rel] = "dir"
        return state


def _main(command):
    import importlib
    module, func = MODULES[command][1].split(":")
    return getattr(importlib.import_module(module), func)


def run_in_process(case, workspace):
    """(exit status, stderr) of the command's main(argv), run from the workspace."""
    err = io.StringIO()
    cwd = os.getcwd()
    os.chdir(workspace.root)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                status = _main(case.command)(workspace.argv(case))
            except SystemExit as e:
                status = e.code
    finally:
        os.chdir(cwd)
    return status, err.getvalue()


def run_subprocess(case, workspace):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", MODULES[case.command][0], *workspace.argv(case)],
                          cwd=workspace.root, env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stderr


def problems(status, stderr):
    """What is wrong with a refusal: not status 2, not exactly one line, a traceback."""
    lines = [l for l in stderr.splitlines() if l.strip()]
    found = []
    if status != 2:
        found.append(f"exit status {status}")
    if len(lines) != 1:
        found.append(f"{len(lines)} lines on stderr")
    if "Traceback" in stderr:
        found.append("a traceback")
    return found
