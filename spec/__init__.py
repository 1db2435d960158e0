"""The spec layer: one frozen, validated configuration per hardware unit, and everything derived
from it (widths, pipeline depth, latency, cycle formula, design name, manifest).

Pure Python: it imports neither torch nor amaranth, so every other package may import it --
hdl/ builds from it, the golden and cycle models in software/ read it, gen/ writes it, sim/ and
fpga/ read it back from a manifest. See DESIGN.md, "The spec layer".
"""

from .array import ARRAY_SPARSITY, MULTIPLIERS, ArrayConfig
from .attention import PRUNE_MODES, AttentionConfig
from .checks import ConfigError, FieldsConfig
from .macs import MACS
from .graph_model import GraphModelConfig
from .model import ModelConfig
from .tq import FORMS, TQConfig
from .units import UNITS, Unit, config_from_manifest, manifest, unit_of

__all__ = ["ARRAY_SPARSITY", "FORMS", "MACS", "MULTIPLIERS", "GraphModelConfig", "ModelConfig", "PRUNE_MODES", "UNITS", "ArrayConfig", "AttentionConfig",
           "ConfigError", "FieldsConfig", "TQConfig", "Unit", "config_from_manifest", "manifest", "unit_of"]
