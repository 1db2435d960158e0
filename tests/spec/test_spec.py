"""The spec layer: pure Python, one source of truth per unit, registries that agree everywhere."""

import itertools
import json
import subprocess
import sys

import pytest

from spec import MACS, UNITS, ArrayConfig, AttentionConfig, ConfigError, TQConfig, config_from_manifest, manifest
from spec.checks import check_int


def test_spec_imports_neither_torch_nor_amaranth():
    code = ("import sys, spec, spec.array, spec.attention, spec.tq, spec.macs, spec.units, spec.model; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'amaranth', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_hdl_and_golden_models_import_only_the_spec_across_the_line():
    """hdl/ never imports software/ (beyond the spec), and the golden models never import hdl/."""
    code = ("import sys, hdl.systolic, hdl.attention, hdl.tq, hdl.hostlink, hdl.accel.top, hdl.accel.link; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('software', 'gen', 'sim', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    code = ("import sys, software.golden.array, software.golden.attention, software.golden.tq, software.golden.cycles, "
            "software.golden.model_cycles, software.packing.schedule, software.packing.program; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('hdl', 'amaranth')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_nothing_imports_the_sweep_package():
    """sweep/ is the top floor (DESIGN.md §1): it may import every package, and no package imports it."""
    import ast
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[2]
    offenders = []
    for package in ("spec", "hdl", "gen", "software", "sim", "fpga"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
                offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[0] == "sweep"]
    assert offenders == []
    code = ("import sys, gen.design, sim.model, fpga.build, software.frontend.compress; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sweep'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_mac_style_has_hardware_and_every_unit_has_flags_and_a_component():
    from gen.units import UNIT_FLAGS
    from hdl.macs import MAC_HARDWARE
    assert set(MAC_HARDWARE) == set(MACS)
    assert set(UNIT_FLAGS) == set(UNITS)
    import importlib
    for unit in UNITS.values():
        module, name = unit.component.split(":")
        assert hasattr(importlib.import_module(module), name), unit.component


CONFIGS = [
    ArrayConfig(rows=4, cols=3, alpha=2),
    ArrayConfig(rows=4, cols=3, alpha=2, mac="tq", weight_terms=2, data_terms=3),
    ArrayConfig(rows=2, cols=2, act_width=4, act_signed=False, acc_width=16, double_buffer=False, max_batch=5),
    TQConfig(form="parallel", width=6, signed=False),
    AttentionConfig(head_dim=4, max_len=6, prune="both", threshold=3, top_k=2),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.design_name)
def test_manifest_round_trips_to_the_same_configuration(config):
    m = json.loads(json.dumps(manifest(config, "module x; endmodule")))
    assert config_from_manifest(m) == config
    assert m["latency"] == config.latency and m["design"] == config.design_name
    for port in m["ports"]:
        if "payload" in port:   # payload fields tile their port exactly, without overlap
            spans = sorted((f["lsb"], f["lsb"] + f["width"] * f.get("count", 1)) for f in port["payload"])
            assert spans[0][0] == 0 and spans[-1][1] == port["payload_width"]
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])), port["name"]


def test_design_names_are_unique_per_array_configuration():
    fields = dict(alpha=(1, 2), act_width=(4, 8), act_signed=(True, False), weight_width=(6, 8),
                  acc_width=(24, 32), double_buffer=(True, False), max_batch=(16, 64))
    names = {}
    for values in itertools.product(*fields.values()):
        config = ArrayConfig(rows=3, cols=3, **dict(zip(fields, values)))
        assert names.setdefault(config.design_name, config) == config
    assert ArrayConfig(rows=32, cols=32, alpha=8).design_name == "32x32_colcomb_a8"


@pytest.mark.parametrize("fields, message", [
    (dict(rows=0, cols=1), "rows must be between 1 and 256, not 0"),
    (dict(rows=True, cols=1), "rows must be an integer"),
    (dict(rows=2, cols=2, mac="fp8"), "mac must be one of int, tq, tq-serial, not 'fp8'"),
    (dict(rows=2, cols=2, mac="tq-serial", weight_terms=2, data_terms=3, multiplier="parallel"),
     "mac 'tq-serial' has no multiplier to choose"),
    (dict(rows=2, cols=2, mac="tq"), "mac 'tq' needs weight_terms"),
    (dict(rows=2, cols=2, weight_terms=2), "apply only to mac 'tq'"),
    (dict(rows=2, cols=40, acc_width=16), "acc_width 16 is too narrow"),
])
def test_bad_array_configurations_are_one_line_errors(fields, message):
    with pytest.raises(ConfigError, match=message) as info:
        ArrayConfig(**fields)
    assert "\n" not in str(info.value)


def test_a_manifest_of_an_unknown_unit_or_field_is_refused():
    m = manifest(CONFIGS[0], "")
    with pytest.raises(ValueError, match="unknown unit"):
        config_from_manifest({**m, "unit": "gpu"})
    with pytest.raises(ConfigError, match="unknown array configuration field"):
        config_from_manifest({**m, "config": {**m["config"], "banks": 3}})
    with pytest.raises(ConfigError, match="must be a mapping"):
        config_from_manifest({**m, "config": [1, 2]})


def test_check_int_names_the_field():
    assert check_int("x", 3, 0, 5) == 3
    with pytest.raises(ConfigError, match="x must be an integer, not '3'"):
        check_int("x", "3", 0, 5)
