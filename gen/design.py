"""Generation in-process: a configuration in, its Verilog and manifest out.

This is what `python -m gen` runs, and what sim/ and fpga/ call directly (no subprocess): the
unit comes from the configuration's class (spec.units), its Amaranth component from the unit's
registry entry, and the manifest from the spec, plus the documentation texts the front-end keeps
beside its golden models.
"""

import dataclasses
import importlib
import json
import os
import shutil
import tempfile

from spec.units import manifest as spec_manifest
from spec.units import unit_of


@dataclasses.dataclass(frozen=True)
class Design:
    config: object
    verilog: str        # the Verilog text
    manifest: dict

    @property
    def top(self):
        return self.manifest["top"]

    @property
    def lines(self):
        return len(self.verilog.splitlines())


def component(config, **options):
    """The unit's Amaranth component for `config`, e.g. hdl.systolic.SystolicArray(config)."""
    module, name = unit_of(config).component.split(":")
    return getattr(importlib.import_module(module), name)(config, **options)


def unit_flags(name):
    """The flags module of unit `name` (gen/units.py)."""
    from .units import UNIT_FLAGS
    return importlib.import_module(UNIT_FLAGS[name])


def manifest_extras(config):
    """Texts of the golden models that a reader of the manifest needs (arithmetic, stream order),
    from the unit's flags module if it has any."""
    extras = getattr(unit_flags(unit_of(config).name), "manifest_extras", None)
    return extras(config) if extras else {}


def generate(config):
    """The Design of `config` (a spec configuration)."""
    # Imported here so that `--help` and bad arguments answer without loading Amaranth.
    from amaranth.back import verilog
    unit = unit_of(config)
    options = {"shared_cell": f"{unit.top}_cell"} if unit.shared_cell else {}
    top = component(config, **options)
    # emit_src=False: no source paths in the output, so it is identical on every machine.
    text = verilog.convert(top, name=unit.top, emit_src=False)
    # Modules the component instantiates many times are emitted once, before it.
    shared = [verilog.convert(module, name=name, emit_src=False)
              for name, module in sorted(getattr(top, "shared_modules", {}).items())]
    text = "".join(shared) + text
    return Design(config=config, verilog=text, manifest=spec_manifest(config, text, extras=manifest_extras(config)))


def output_problem(out):
    """Why directory `out` cannot receive a design, or None. Checked before anything is generated."""
    out = os.path.abspath(out)
    probe = out
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if probe == out and not os.path.isdir(out):
        return f"output path {out} exists and is not a directory"
    if probe != out and not os.path.isdir(probe):
        return f"cannot create {out}: {probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"cannot write to {probe}: permission denied"
    return None


def write(design, out):
    """Write `<top>.v` and `manifest.json` into directory `out` as a set. Both are written into a
    staging directory inside `out` first; then the old files (if any) are set aside and the new
    ones moved in. If any step fails, the old files are put back: a failure never leaves a
    half-written file, or a new Verilog beside an old manifest. Returns the two paths."""
    os.makedirs(out, exist_ok=True)
    names = {f"{design.top}.v": design.verilog,
             "manifest.json": json.dumps(design.manifest, indent=2, sort_keys=True) + "\n"}
    staging = tempfile.mkdtemp(prefix=".gen-", dir=out)
    moved, set_aside = [], []
    try:
        for name, text in names.items():
            with open(os.path.join(staging, name), "w", newline="\n") as f:
                f.write(text)
        for name in names:
            if os.path.exists(os.path.join(out, name)):
                os.replace(os.path.join(out, name), os.path.join(staging, name + ".old"))
                set_aside.append(name)
        for name in names:
            os.replace(os.path.join(staging, name), os.path.join(out, name))
            moved.append(name)
    except BaseException:
        for name in moved:
            os.remove(os.path.join(out, name))
        for name in set_aside:
            os.replace(os.path.join(staging, name + ".old"), os.path.join(out, name))
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return os.path.join(out, f"{design.top}.v"), os.path.join(out, "manifest.json")
