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

from software import output_set
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


def generate(config, **options):
    """The Design of `config` (a spec configuration). `options` go to the unit's component (the
    model accelerator's compiled program)."""
    # Imported here so that `--help` and bad arguments answer without loading Amaranth.
    from amaranth.back import verilog
    unit = unit_of(config)
    if unit.shared_modules:
        options = {"shared_prefix": unit.top, **options}
    top = component(config, **options)
    # emit_src=False: no source paths in the output, so it is identical on every machine.
    text = verilog.convert(top, name=unit.top, emit_src=False)
    # Modules the component instantiates many times are emitted once, before it.
    shared = [verilog.convert(module, name=name, emit_src=False)
              for name, module in sorted(getattr(top, "shared_modules", {}).items())]
    text = "".join(shared) + text
    return Design(config=config, verilog=text, manifest=spec_manifest(config, text, extras=manifest_extras(config)))


MARKER = "manifest.json"     # what makes a directory an earlier output of gen (software.output_set)


def output_problem(out):
    """Why directory `out` cannot receive a design, or None. Checked before anything is generated."""
    return output_set.output_problem(out, MARKER)


def write(design, out):
    """Write `<top>.v` and `manifest.json` as directory `out`, as a set (software.output_set): both
    are written into a staging directory beside `out`, which then replaces `out` by a rename. A
    failure never leaves a half-written file, or a new Verilog beside an old manifest. `out` must
    be absent, empty or an earlier output (it holds manifest.json). Returns the two paths;
    OutputError (one line) for an output path that cannot be written."""
    names = {f"{design.top}.v": design.verilog,
             MARKER: json.dumps(design.manifest, indent=2, sort_keys=True) + "\n"}
    with output_set.output_set(out, marker=MARKER) as staging:
        for name, text in names.items():
            with open(os.path.join(staging, name), "w", newline="\n") as f:
                f.write(text)
    return os.path.join(out, f"{design.top}.v"), os.path.join(out, MARKER)
