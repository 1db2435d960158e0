"""Run the host driver against the host link's generated Verilog in Verilator (sim/tb_hostlink.py).

The Verilog and its manifest come from `python -m fpga verilog` (fpga.build.write_link_verilog);
`sim.runner.build` verilates them like any other design.
"""

import json
import os

from .linkfaults import DIRECTIONS, FAULT_KINDS
from .runner import PROJECT_ROOT, SimulationError


def layer_stimulus(layer, x):
    """A packed layer (software.packing.colcomb.ColumnCombining) and its inputs as JSON-able data."""
    return {
        "layer": {"groups": [list(map(int, g)) for g in layer.groups], "packed": layer.packed.tolist(),
                  "select": layer.select.tolist(), "alpha": int(layer.alpha),
                  "in_features": int(layer.in_features)},
        "x": [[int(v) for v in row] for row in x],
    }


def quiet_frames(built):
    """A host read timeout, in byte times, that outlasts the board's frame timeout and its longest
    reply: the driver's wait for a quiet line is one such timeout."""
    link = built.manifest["link"]
    return link["frame_timeout_byte_times"] + 2 * link["result_frame_bytes"] + 40


def _run(built, stimulus, name):
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner
    run_dir = built.build_dir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    stimulus_path, report = run_dir / "stimulus.json", run_dir / "report.json"
    stimulus_path.write_text(json.dumps({
        "config": built.manifest["config"],
        "divisor": built.manifest["link"]["divisor"],
        **stimulus,
    }))
    report.unlink(missing_ok=True)
    env = {"SPARSEGEN_STIMULUS": str(stimulus_path), "SPARSEGEN_REPORT": str(report),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    xml = get_runner("verilator").test(
        test_module="sim.tb_hostlink", hdl_toplevel=built.top, hdl_toplevel_lang="verilog",
        build_dir=built.build_dir, test_dir=run_dir, extra_env=env, log_file=run_dir / "sim.log")
    tests, failed = get_results(xml)
    data = json.loads(report.read_text()) if report.exists() else {}
    if failed or not tests or not data:
        raise SimulationError(data.get("error") or f"cocotb run failed; see {run_dir / 'sim.log'}")
    return data


def run_host_session(built, layer, x, *, skew=1.0, self_test_batch=4, timeout_frames=None, name="host"):
    """Run sim/tb_hostlink.py's clean session on `built` (a sim.runner.Build of the host link).

    Returns the testbench's report (dict). Raises SimulationError if the driver failed."""
    return _run(built, {"skew": skew, "timeout_frames": timeout_frames or quiet_frames(built),
                        "self_test_batch": self_test_batch, **layer_stimulus(layer, x)}, name)


def run_fault_campaign(built, *, sessions, probability, seed=0, shape=(4, 9, 2), retries=8,
                       kinds=FAULT_KINDS, directions=DIRECTIONS, limit=None, name="faults"):
    """Sessions of random layers (`shape`: out features, in features, batch) over a line that
    damages a frame with `probability`, both ways, at most `limit` frames a session (None: no
    limit; sim/linkfaults.py). Returns the report: `sessions` (faults and outcome of each) and
    the driver's summed `stats`."""
    return _run(built, {"skew": 1.0, "timeout_frames": quiet_frames(built), "faults": {
        "sessions": sessions, "probability": probability, "seed": seed, "shape": list(shape),
        "retries": retries, "kinds": list(kinds), "directions": list(directions), "limit": limit}}, name)


def run_model_session(built, x_int, *, skew=1.0, faults=None, weights=None, name="model_host"):
    """Images through a model accelerator's host link (`built`: python -m fpga verilog --model),
    with the host driver (software.host.ModelBoard); `faults`: {seed, probability} of a line that
    damages frames both ways (sim/linkfaults.py); `weights`: the program's weight beats, which the
    driver sends after connecting to an accelerator that loads them. Returns the testbench's report
    (logits, stats)."""
    stimulus = {"skew": skew, "timeout_frames": quiet_frames(built), "images": [[int(v) for v in row] for row in x_int]}
    if weights is not None:
        stimulus["weights"] = [int(w) for w in weights]
    if faults:
        stimulus["faults"] = {"seed": faults["seed"], "probability": faults["probability"], "kinds": list(FAULT_KINDS),
                              "directions": list(DIRECTIONS), "limit": faults.get("limit")}
    return _run(built, stimulus, name)
