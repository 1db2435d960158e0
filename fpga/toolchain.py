"""The open FPGA toolchain from PyPI: Yosys, nextpnr and the packers of the YoWASP wheels.

Amaranth's build scripts call `$YOSYS`, `$NEXTPNR_ICE40`, ... (defaulting to system tools); this
module points them at the YoWASP console scripts for the build's subprocess only, so nobody sets
them by hand and no system tool is ever picked up by accident.
"""

import importlib.metadata
import os
import shutil
import sysconfig

from .families import FAMILIES

# Amaranth tool name -> Tool (environment variable, YoWASP console script, wheel), of every family.
TOOLS = {tool.name: tool for family in FAMILIES.values() for tool in family.tools}

# nextpnr's routers (`--router`); the first is its default.
NEXTPNR_ROUTERS = ("router1", "router2")
# nextpnr's placers (`--placer`); the first is its default: HeAP (analytic) and the electrostatic one.
NEXTPNR_PLACERS = ("heap", "static")


class ToolchainError(RuntimeError):
    pass


def _find(script):
    # The scripts sit next to this interpreter's (a venv need not be on PATH); then PATH.
    scripts_dir = sysconfig.get_path("scripts")
    for candidate in (os.path.join(scripts_dir, script), shutil.which(script)):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def tool_environment(tools):
    """Environment for a build script that runs `tools` (Amaranth names) from the YoWASP wheels."""
    env = dict(os.environ)
    missing = []
    for name in tools:
        tool = TOOLS[name]
        path = _find(tool.script)
        if path is None:
            missing.append(tool.wheel)
        else:
            env[tool.env_var] = path
    if missing:
        wheels = " ".join(sorted(set(missing)))
        raise ToolchainError(f"{wheels} not installed: pip install {wheels}  (or pip install -e \".[fpga]\")")
    return env


def versions(tools):
    """{wheel: version} of the wheels that provide `tools`."""
    out = {}
    for tool in tools:
        wheel = TOOLS[tool].wheel
        try:
            out[wheel] = importlib.metadata.version(wheel)
        except importlib.metadata.PackageNotFoundError:
            out[wheel] = None
    return out
