"""The hardware units sparsegen generates: a registry, and the manifest every unit writes.

A unit is a configuration class (a frozen dataclass in this package), the top module's name, and
the Amaranth component that builds it, named as "module:Class" so that the spec never imports
Amaranth. A new unit is a configuration module here, a component in hdl/, and one line in UNITS.
"""

import dataclasses
import hashlib
import json
import re

from .array import TOP as ARRAY_TOP
from .checks import ConfigError
from .array import ArrayConfig
from .attention import TOP as ATTENTION_TOP
from .attention import AttentionConfig
from .graph_model import TOP as GRAPH_MODEL_TOP
from .graph_model import GraphModelConfig
from .model import TOP as MODEL_TOP
from .model import ModelConfig
from .tq import TOP as TQ_TOP
from .tq import TQConfig

VERSION = "0.1.0"
GENERATOR = f"sparsegen {VERSION}"


@dataclasses.dataclass(frozen=True)
class Unit:
    name: str           # what `python -m gen --unit NAME` and the manifest's "unit" say
    manifest_name: str  # the manifest's "unit" field (kept stable for readers of old manifests)
    config: type        # its configuration class
    top: str            # the top module of the Verilog
    component: str      # "module:Class" of the Amaranth component, built as Class(config)
    summary: str
    shared_modules: bool = False   # its component instantiates modules emitted once (cell, row)


UNITS = {unit.name: unit for unit in (
    Unit("array", "column_combining_systolic_array", ArrayConfig, ARRAY_TOP, "hdl.systolic:SystolicArray",
         "the column-combining systolic array", shared_modules=True),
    Unit("tq", "tq_multiplier", TQConfig, TQ_TOP, "hdl.tq:TQMultiplier",
         "the term-quantization multiplier"),
    Unit("attention", "attention", AttentionConfig, ATTENTION_TOP, "hdl.attention:AttentionUnit",
         "the one-head attention unit"),
    Unit("model", "model_accelerator", ModelConfig, MODEL_TOP, "hdl.accel.top:ModelAccelerator",
         "a packed model resident on the chip (python -m gen --model FILE)", shared_modules=True),
    Unit("graph-model", "graph_model_accelerator", GraphModelConfig, GRAPH_MODEL_TOP, "hdl.accel.graph:GraphAccelerator",
         "a packed layer graph (convolutions, residual adds, pooling) resident on the chip "
         "(python -m gen --model FILE)", shared_modules=True),
)}


def unit_of(config):
    """The Unit whose configuration class `config` is an instance of."""
    for unit in UNITS.values():
        if type(config) is unit.config:
            return unit
    raise TypeError(f"no unit is configured by a {type(config).__name__}")


def unit_named_in(manifest):
    """The Unit whose configuration a manifest holds: its "config_unit" field for a design that
    wraps a unit (the FPGA host link wraps the array), else its "unit" field."""
    name = manifest.get("config_unit", manifest.get("unit"))
    for unit in UNITS.values():
        if name in (unit.name, unit.manifest_name):
            return unit
    raise ValueError(f"unknown unit {name!r} in the manifest")


def manifest(config, verilog_text, *, extras=None):
    """The manifest written next to a unit's Verilog: configuration, everything derived from it,
    ports with their payload packing, latency and cycle model, and the Verilog's hash."""
    unit = unit_of(config)
    return {
        "generator": GENERATOR,
        "unit": unit.manifest_name,
        "top": unit.top,
        "verilog": f"{unit.top}.v",
        "verilog_sha256": hashlib.sha256(verilog_text.encode()).hexdigest(),
        "design": config.design_name,
        "config": config.as_dict(),
        "derived": config.derived(),
        "ports": config.ports(),
        "latency": config.latency,
        "cycle_model": config.cycle_formula,
        **config.manifest_extras(),
        **(extras or {}),
    }


def config_from_manifest(manifest):
    """The configuration a manifest was generated from, after checking the manifest: a manifest
    comes from outside (sim/ and fpga/ read it back from disk), so everything a reader relies on is
    validated with a one-line ConfigError -- a mapping, a known unit, a valid configuration, a top
    that is a Verilog name, a Verilog file named inside the manifest's own directory, and, for a
    unit's own manifest, the design name, latency and ports that its configuration derives."""
    if not isinstance(manifest, dict):
        raise ConfigError(f"a manifest must be a JSON object, not {type(manifest).__name__}")
    try:
        unit = unit_named_in(manifest)
    except ValueError as e:
        raise ConfigError(str(e)[:200]) from None
    config = unit.config.from_dict(manifest.get("config"))
    top = manifest.get("top")
    if not isinstance(top, str) or not _VERILOG_NAME.fullmatch(top):
        raise ConfigError(f"the manifest's top must be a Verilog module name, not {top!r}"[:200])
    if "verilog" in manifest:
        name = manifest["verilog"]
        if not isinstance(name, str) or not _VERILOG_FILE.fullmatch(name):
            raise ConfigError(f"the manifest's verilog must name a .v file beside it, not {name!r}"[:200])
    if "verilog_sha256" in manifest and not (isinstance(manifest["verilog_sha256"], str)
                                             and _SHA256.fullmatch(manifest["verilog_sha256"])):
        raise ConfigError("the manifest's verilog_sha256 is not a SHA-256 digest")
    if "config_unit" not in manifest:       # a unit's own manifest: what the testbench drives
        derived = {"top": unit.top, "design": config.design_name, "latency": config.latency,
                   "ports": json.loads(json.dumps(config.ports()))}
        for key, expected in derived.items():
            if manifest.get(key) != expected:
                raise ConfigError(f"the manifest's {key} is not what its configuration gives "
                                  f"({str(manifest.get(key))[:60]!s} instead of {str(expected)[:60]!s})")
    return config


_VERILOG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,127}")
_VERILOG_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}\.v")
_SHA256 = re.compile(r"[0-9a-f]{64}")
