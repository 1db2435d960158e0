"""The stages of a point, as nodes of the task graph: the registry STAGES.

    dense    train the digits model from a seed                      (shared by every pruning of it)
    compress prune, quantize, export and pack (software.frontend.compress)
             -- for any array size: rows, cols and max_batch only change the cost
    cycles   tiles, cycles, utilization on the point's array (software.golden.cycles, through
             compress's packed_cost / dense_cost)                      (one compressed model, many arrays)
    design   the array's Verilog and manifest (gen.design)            (one design, an RTL check and many boards)
    rtl      the packed model through that Verilog in Verilator (sim.model), against the golden model
    fpga     a bitstream for a board (fpga.build), its utilization and Fmax

Each node has a configuration (only what its result depends on), parents, and the packages whose
code it runs (which version the cache key names). ``run_node`` is what a Dask worker executes: it
returns the cached result if there is one, else computes, stores and returns it. A refused
configuration or a build that does not fit is a result too: ``{"error": one line}``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import tempfile
import time

from .cache import Cache

# The code each stage runs: its results are stored under a hash of these sources (sweep/cache.py).
COMPRESS_PACKAGES = ("spec", "software", "sweep/stages.py")
DESIGN_PACKAGES = ("spec", "hdl", "gen", "sweep/stages.py")


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    packages: tuple         # whose sources version the cache key
    run: object             # (config, parents: dict name -> result, staging dir) -> result dict


class StageFailure(Exception):
    """A stage that cannot give a result for its configuration; the message is the point's reason."""


# Errors that a configuration causes, the same every time: stored in the cache like any result.
# Anything else (a killed tool, a full disk) is reported for the point but computed again next run.
def deterministic_errors():
    from fpga.build import BuildError
    from sim.toolchain import ToolchainError
    return (ValueError, StageFailure, BuildError, ToolchainError)


def is_stopped(error: BaseException) -> bool:
    from fpga.build import ToolsStopped
    return isinstance(error, ToolsStopped)


def one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ----------------------------------------------------------------------------------------------
# The stages' work


def _quiet_torch():
    import torch
    torch.set_num_threads(1)        # one worker per core: more threads only fight over the cores


def run_dense(config, parents, staging):
    import torch
    from software.frontend.compress import float_accuracy
    from software.models.digits import build_model, load_digits_split, train
    _quiet_torch()
    model = build_model(seed=config["seed"])
    split = load_digits_split()
    train(model, epochs=config["epochs"], seed=config["seed"], progress=False, split=split)
    torch.save(model.state_dict(), staging / "dense.pt")
    return {"float_dense_accuracy": float_accuracy(model, split.x_test, split.y_test)}


def load_dense(entry, seed):
    import torch
    from software.models.digits import build_model
    model = build_model(seed=seed)
    model.load_state_dict(torch.load(pathlib.Path(entry) / "dense.pt", map_location="cpu", weights_only=True))
    return model


def run_compress(config, parents, staging):
    from software.frontend.compress import Options, compress
    from software.packfile import save
    _quiet_torch()
    opts = Options(**{k: tuple(v) if k == "nm" else v for k, v in config.items()}, progress=False)
    dense = load_dense(parents["dense"]["entry"], opts.seed) if "dense" in parents else None
    result = compress(opts, dense_model=dense)
    save(result.int_model, staging / "model.npz", info=result.report())
    return {"float_dense_accuracy": result.accuracy["float_dense"],
            "pruned_float_accuracy": result.accuracy["pruned_float"],
            "int_accuracy": result.accuracy["integer"], "weight_sparsity": result.sparsity,
            "term_pairs": result.term_pairs, "test_images": result.test_images,
            "groups": ", ".join(str(layer.groups) for layer in result.int_model.layers)}


def packed_model(compress_result, array_config):
    """The compressed model on ``array_config`` (its rows, cols and max_batch; compress packs for any)."""
    from software.packfile import load
    model, _ = load(compress_result["entry"] + "/model.npz")
    if dataclasses.replace(model.config, rows=array_config.rows, cols=array_config.cols,
                           max_batch=array_config.max_batch) != array_config:
        raise StageFailure(f"the model is packed for {model.config.design_name}, the array is "
                           f"{array_config.design_name}")
    return dataclasses.replace(model, config=array_config)


def array_config(config):
    from spec import ArrayConfig
    return ArrayConfig(**config)


def run_cycles(config, parents, staging):
    from software.frontend.compress import dense_cost, packed_cost
    from software.models.digits import load_digits_split
    model = packed_model(parents["compress"], array_config(config))
    x_int = model.quantize_input(load_digits_split().x_test)
    packed, dense = packed_cost(model, x_int), dense_cost(model, x_int)
    return {"tiles": packed.tiles, "cycles": packed.cycles, "utilization": packed.utilization,
            "dense_tiles": dense.tiles, "dense_cycles": dense.cycles, "dense_utilization": dense.utilization}


def run_design(config, parents, staging):
    from gen.design import generate, write
    design = generate(array_config(config))
    write(design, staging / "design")
    return {"design_name": design.config.design_name, "verilog_lines": design.lines,
            "verilog_sha256": design.manifest.get("verilog_sha256")}


def run_rtl(config, parents, staging):
    import numpy as np
    from sim.model import run_model
    from sim.runner import build
    from software.models.digits import load_digits_split
    from spec import config_from_manifest
    design_dir = parents["design"]["entry"] + "/design"
    with open(design_dir + "/manifest.json") as f:
        hardware = config_from_manifest(json.load(f))
    model = packed_model(parents["compress"], hardware)
    split = load_digits_split()
    n = config["images"]
    if not 1 <= n <= len(split.x_test):
        raise StageFailure(f"rtl_images must be between 1 and {len(split.x_test)}, not {n}")
    x_int = model.quantize_input(split.x_test[:n])
    labels = split.y_test[:n].numpy()
    start = time.perf_counter()
    built = build(design_dir)
    logits, runs = run_model(model, x_int, built, name="sweep")
    golden = model.run_golden(x_int)
    return {"rtl_images": n, "rtl_logits_identical": bool(np.array_equal(logits, golden)),
            "rtl_accuracy": float((logits.argmax(1) == labels).mean()),
            "rtl_cycles": sum(r.cycles for r in runs), "rtl_model_cycles": sum(r.model_cycles for r in runs),
            "rtl_seconds": round(time.perf_counter() - start, 1),
            "rtl_layers": [dataclasses.asdict(r) for r in runs]}


KEEP_FROM_BUILD = ("summary.json", "report.txt", "manifest.json")


def run_fpga(config, parents, staging):
    from fpga.boards import board as get_board
    from fpga.build import build
    from spec import config_from_manifest
    with open(parents["design"]["entry"] + "/design/manifest.json") as f:
        hardware = config_from_manifest(json.load(f))
    board = get_board(config["board"])
    # The tools work on the worker's local disk (their netlists can take hundreds of MB); only the
    # summary, report, link manifest and bitstream go into the cache, which may be a shared file system.
    with tempfile.TemporaryDirectory(prefix="sweep-fpga-") as local:
        result = build(board, hardware, os.path.join(local, "build"), baud=config["baud"], dsp=config["dsp"],
                       clock_mhz=config["clock_mhz"], time_limit=config["time_limit"])
        summary = result.summary
        os.makedirs(staging / "build")
        for name in (*KEEP_FROM_BUILD, summary["bitstream"]):
            shutil.copy2(os.path.join(local, "build", name), staging / "build" / name)
    resources = summary["resources"]
    used = lambda name: resources.get(name, {}).get("used")   # noqa: E731
    clock = summary["array_clock"]
    fmax = summary["fmax"].get(clock, {}) if clock else {}
    path = summary.get("critical_path") or {}
    return {"lut4": used("luts"), "ff": used("flip_flops"), "bram": used("block_ram"), "dsp": used("dsp"),
            "fmax_mhz": fmax.get("achieved_mhz"), "clock_mhz": summary["clock_mhz"],
            "timing_pass": summary["timing_pass"], "fpga_seconds": summary["seconds"],
            "critical_path": f"{path.get('from', '?')} -> {path.get('to', '?')}" if path else None}


STAGES = {stage.name: stage for stage in (
    Stage("dense", COMPRESS_PACKAGES, run_dense),
    Stage("compress", COMPRESS_PACKAGES, run_compress),
    Stage("cycles", COMPRESS_PACKAGES, run_cycles),
    Stage("design", DESIGN_PACKAGES, run_design),
    Stage("rtl", (*DESIGN_PACKAGES, "software", "sim"), run_rtl),
    Stage("fpga", (*DESIGN_PACKAGES, "software", "fpga"), run_fpga),
)}


# ----------------------------------------------------------------------------------------------
# What a worker runs


def run_node(stage_name, key, config, parents, cache_root, point_label=""):
    """The result of one node: from the cache, or computed and stored. ``parents`` maps each
    parent stage to its result (with ``entry``, the directory of its files)."""
    cache = Cache(cache_root)
    stored = cache.get(key)
    if stored is not None:
        return {**stored, "entry": str(cache.entry(key)), "cached": True}
    failed = [(name, result) for name, result in parents.items() if "error" in result]
    if failed:
        name, result = failed[0]
        return {"error": result["error"], "failed_stage": result.get("failed_stage", name)}
    cache.log(event="start", stage=stage_name, key=key, point=point_label)
    start = time.perf_counter()
    staging = cache.staging(key)
    try:
        result = STAGES[stage_name].run(config, parents, staging)
        keep = True
    except deterministic_errors() as e:
        # Tools stopped from outside (fpga.build.ToolsStopped) say nothing about the configuration.
        result, keep = {"error": one_line(e), "failed_stage": stage_name}, not is_stopped(e)
    except Exception as e:      # noqa: BLE001 - reported with the point, not stored: next run tries again
        result, keep = {"error": f"{type(e).__name__}: {one_line(e)}", "failed_stage": stage_name}, False
    result["seconds"] = round(time.perf_counter() - start, 3)
    if keep:
        result = cache.put(key, result, staging)
    else:
        shutil.rmtree(staging, ignore_errors=True)
    cache.log(event="done", stage=stage_name, key=key, point=point_label, error=result.get("error"))
    return {**result, "entry": str(cache.entry(key)), "cached": False}


def images_per_second(fmax_mhz, cycles, test_images):
    """Images per second on the array at ``fmax_mhz``: the cycle model's cycles for the test split."""
    if not fmax_mhz or not cycles or not test_images:
        return None
    return fmax_mhz * 1e6 * test_images / cycles

