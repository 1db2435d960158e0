"""The results table: one row per point with every input setting and every output, as CSV and JSON.

COLUMNS is the registry of outputs: which stage gives each, whether more (max) or less (min) is
better -- the objectives the Pareto analysis may use -- and how the printed table shows it.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os

from software.output_set import write_atomically

from .stages import images_per_second
from .sweepfile import SETTINGS


@dataclasses.dataclass(frozen=True)
class Column:
    stage: str              # the stage that gives it ("input" for the settings, "point" for bookkeeping)
    better: str | None = None   # "max", "min" or None (not an objective)
    title: str = ""
    fmt: str = "{}"


OUTPUTS = {
    "float_dense_accuracy": Column("compress", "max", "float dense accuracy", "{:.2%}"),
    "pruned_float_accuracy": Column("compress", "max", "pruned float accuracy", "{:.2%}"),
    "int_accuracy": Column("compress", "max", "integer accuracy", "{:.2%}"),
    "weight_sparsity": Column("compress", "max", "weight sparsity", "{:.1%}"),
    "term_pairs": Column("compress", "min", "term pairs (test split)", "{:.3g}"),
    "test_images": Column("compress"),
    "groups": Column("compress", None, "groups per layer"),
    "tiles": Column("cycles", "min", "weight tiles (one pass)"),
    "cycles": Column("cycles", "min", "cycles (test split)"),
    "utilization": Column("cycles", "max", "utilization", "{:.3f}"),
    "dense_tiles": Column("cycles", None, "dense tiles"),
    "dense_cycles": Column("cycles", None, "dense cycles"),
    "dense_utilization": Column("cycles", None, "dense utilization", "{:.3f}"),
    "design_name": Column("design", None, "design"),
    "rtl_images": Column("rtl"),
    "rtl_logits_identical": Column("rtl", None, "RTL = golden"),
    "rtl_accuracy": Column("rtl", "max", "RTL accuracy", "{:.2%}"),
    "rtl_cycles": Column("rtl", "min", "RTL cycles"),
    "rtl_model_cycles": Column("rtl", None, "cycle model (RTL images)"),
    "lut4": Column("fpga", "min", "LUT4"),
    "ff": Column("fpga", "min", "flip-flops"),
    "bram": Column("fpga", "min", "block RAM"),
    "dsp_blocks": Column("fpga", "min", "DSP blocks"),
    "fmax_mhz": Column("fpga", "max", "Fmax (MHz)", "{:.1f}"),
    "clock_mhz": Column("fpga", None, "array clock (MHz)", "{:g}"),
    "timing_pass": Column("fpga", None, "meets clock"),
    "critical_path": Column("fpga", None, "critical path"),
    "fpga_seconds": Column("fpga", None, "build seconds", "{:.0f}"),
    "images_per_s": Column("fpga", "max", "images/s at Fmax", "{:.0f}"),
}
BOOKKEEPING = {
    "point": Column("point"), "point_id": Column("point"), "status": Column("point"),
    "failed_stage": Column("point"), "error": Column("point"), "cached": Column("point"),
    "seconds": Column("point", None, "compute seconds", "{:.1f}"),
}
COLUMNS = {**BOOKKEEPING, **{name: Column("input") for name in SETTINGS if name != "dsp"},
           "dsp_setting": Column("input"), **OUTPUTS}
# Renamed so that the setting (--dsp of the build) and the measurement (DSP blocks used) differ.
RENAMED_OUTPUTS = {"dsp": "dsp_blocks"}
RENAMED_SETTINGS = {"dsp": "dsp_setting"}


def point_row(point, stages, results, error=None) -> dict:
    """The row of ``point``: its settings, the outputs of its stages' ``results`` (stage name ->
    result dict), and its status (ok, or failed with the first stage's one-line reason)."""
    row = {"point": point.index, "point_id": point.point_id}
    for name, value in point.settings.items():
        row[RENAMED_SETTINGS.get(name, name)] = list(value) if isinstance(value, tuple) else value
    seconds, cached = 0.0, True
    for stage in ("dense", "compress", "cycles", "design", "rtl", "fpga"):
        result = results.get(stage)
        if result is None:
            continue
        if "error" in result and error is None:
            error, failed = result["error"], result.get("failed_stage", stage)
            row["failed_stage"] = failed
        if not result.get("cached"):
            cached = False
            seconds += result.get("seconds", 0.0)
        for name, value in result.items():
            name = RENAMED_OUTPUTS.get(name, name)
            if name in OUTPUTS and OUTPUTS[name].stage == stage:
                row[name] = value
    if "fpga" in results and "cycles" in results:
        row["images_per_s"] = images_per_second(row.get("fmax_mhz"), row.get("cycles"), row.get("test_images"))
    row["status"] = "failed" if error else "ok"
    row["error"] = error
    row["cached"] = cached and not error and bool(results)
    row["seconds"] = round(seconds, 3)
    return {name: row.get(name) for name in COLUMNS if shown(name, stages)}


def shown(name, stages) -> bool:
    """Whether the table of a sweep running ``stages`` has the column ``name``."""
    stage = COLUMNS[name].stage
    if name == "images_per_s":
        return "fpga" in stages and "cycles" in stages
    if stage == "design":
        return "rtl" in stages or "fpga" in stages
    return stage in ("point", "input") or stage in stages


def write_tables(rows, out_dir) -> list:
    """results.csv and results.json in ``out_dir`` (each written whole, then renamed); their paths."""
    os.makedirs(out_dir, exist_ok=True)
    names = list(dict.fromkeys(name for row in rows for name in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else json.dumps(v) if isinstance(v, list) else v) for k, v in row.items()})
    paths = [os.path.join(out_dir, "results.csv"), os.path.join(out_dir, "results.json")]
    write_atomically(paths[0], buffer.getvalue())
    write_atomically(paths[1], json.dumps(rows, indent=1) + "\n")
    return paths


def show(name, value):
    if value is None:
        return "-"
    column = COLUMNS.get(name)
    try:
        return column.fmt.format(value) if column else str(value)
    except (ValueError, TypeError):
        return str(value)


def summary_columns(plan):
    """The columns the printed table shows: the point, the settings that vary, the outputs."""
    varying = [RENAMED_SETTINGS.get(n, n) for n in SETTINGS
               if n != "label" and len({repr(p.settings[n]) for p in plan.points}) > 1]
    outputs = [n for n, c in OUTPUTS.items() if c.stage in plan.stages and c.title
               and n not in ("float_dense_accuracy", "pruned_float_accuracy", "dense_tiles", "dense_cycles",
                             "dense_utilization", "critical_path", "rtl_model_cycles", "clock_mhz",
                             "fpga_seconds")]
    if "fpga" in plan.stages and "cycles" in plan.stages:
        outputs.append("images_per_s")
    return ["label", *varying, *dict.fromkeys(outputs), "status"]
