"""A sweep as one Dask task graph: each point's stages become nodes, and equal nodes are one.

A node's key is its cache key (sweep/cache.py), so two points that need the same dense model, the
same compressed model (packed for several arrays) or the same design (checked in Verilator and
built for several boards) name the same node: Dask runs it once and hands its result to every
point. Nodes already in the cache are not submitted at all; their stored results go straight to
the nodes that need them. FPGA builds ask for the worker resource FPGA_BUILD (a LocalCluster gives
each worker one), so that a worker never runs two memory-heavy builds at once.
"""
from __future__ import annotations

import dataclasses
import hashlib

from software.frontend.sparsity import method_flags
from software.frontend.compress import Options

from .cache import code_version, stage_key
from .stages import STAGES, StageFailure, one_line, run_node

FPGA_RESOURCE = "FPGA_BUILD"
# compress packs for any array: its node is computed on this one (rows, cols and max_batch only
# change the cost, which the cycles node computes for the point's own array).
COMPRESS_ARRAY = {"rows": 32, "cols": None, "max_batch": 64}
TQ_SETTINGS = ("term_group", "weight_terms", "data_terms")


@dataclasses.dataclass(frozen=True)
class Node:
    stage: str
    config: dict
    parents: tuple = ()         # (stage name, Node)

    @property
    def key(self):
        stage = STAGES[self.stage]
        return stage_key(self.stage, self.config, tuple(p.key for _, p in self.parents),
                         code_version(stage.packages))


def compress_config(opts: Options) -> dict:
    """The settings the compressed model depends on: a method's knobs only if it reads them, the
    term budget only for tq, the tile size pinned to the rows it defaults to; the array size not."""
    defaults = Options()
    config = {f.name: getattr(opts, f.name) for f in dataclasses.fields(Options) if f.name != "progress"}
    for flag, users in method_flags():
        if opts.method not in users:
            config[flag.dest] = getattr(defaults, flag.dest)
        elif flag.dest == "tile_size" and opts.tile_size is None:
            config["tile_size"] = opts.rows
    if opts.quant != "tq":
        config.update({name: getattr(defaults, name) for name in TQ_SETTINGS})
    config.update(COMPRESS_ARRAY)
    return config


def hardware_config(point, opts: Options):
    """The point's ArrayConfig: the front-end's array (widths, alpha) with the point's MAC style."""
    config = opts.array_config()
    if point.settings["mac"] != "int":
        tb = opts.term_budget()
        if tb is None:
            raise StageFailure(f"mac {point.settings['mac']!r} needs quant = \"tq\" (its term budget)")
        config = dataclasses.replace(config, mac=point.settings["mac"],
                                     weight_terms=-(-tb.weight_terms // tb.group), data_terms=tb.data_terms)
    return config


def point_nodes(point, stages) -> dict:
    """{stage name: Node} of a point's stages (and the nodes they need); StageFailure or the
    configuration's own error (a ValueError) if the point's configuration is refused."""
    s = point.settings
    opts = point.options().validate()
    nodes = {}
    if "compress" in stages:
        parents = ()
        if opts.model == "digits":
            dense = Node("dense", {"model": "digits", "seed": opts.seed,
                                   "epochs": 30 if opts.epochs is None else opts.epochs})
            parents = (("dense", dense),)
        nodes["compress"] = Node("compress", compress_config(opts), parents)
    hardware = hardware_config(point, opts)
    if "cycles" in stages:
        nodes["cycles"] = Node("cycles", hardware.as_dict(), (("compress", nodes["compress"]),))
    if ("rtl" in stages and s["rtl_images"] != 0) or "fpga" in stages:
        nodes["design"] = Node("design", hardware.as_dict())
    if "rtl" in stages and s["rtl_images"] != 0:
        nodes["rtl"] = Node("rtl", {"images": s["rtl_images"]},
                            (("compress", nodes["compress"]), ("design", nodes["design"])))
    if "fpga" in stages:
        nodes["fpga"] = Node("fpga", {"board": s["board"], "baud": s["baud"], "dsp": s["dsp"],
                                      "clock_mhz": s["clock_mhz"], "time_limit": s["fpga_time_limit"]},
                             (("design", nodes["design"]),))
    return nodes


class Submitter:
    """Submits nodes to a Dask client once each; cached nodes become their stored results."""

    def __init__(self, connect, cache):
        self.connect, self.cache = connect, cache      # connect() -> the Dask client
        self.handles = {}       # node key -> Future or stored result (a dict)
        self.submitted = self.cached = 0

    def __call__(self, node, label=""):
        key = node.key
        if key in self.handles:
            return self.handles[key]
        parents = {name: self(parent, label) for name, parent in node.parents}
        stored = self.cache.get(key)
        if stored is not None:
            self.cached += 1
            handle = {**stored, "entry": str(self.cache.entry(key)), "cached": True}
        else:
            self.submitted += 1
            resources = {FPGA_RESOURCE: 1} if node.stage == "fpga" else None
            # The Dask key names the cache too: a scheduler shared by two sweeps with different
            # caches must not hand one the other's result (stored in the other cache).
            task = f"{node.stage}-{key[:40]}-{hashlib.sha256(str(self.cache.root).encode()).hexdigest()[:8]}"
            handle = self.connect().submit(run_node, node.stage, key, node.config, parents, str(self.cache.root),
                                           label, key=task, pure=False, resources=resources)
        self.handles[key] = handle
        return handle


def plan_points(points, stages):
    """[(point, nodes or None, error or None)]: a refused configuration fails here, before any task."""
    planned = []
    for point in points:
        try:
            planned.append((point, point_nodes(point, stages), None))
        except (ValueError, StageFailure) as e:
            planned.append((point, None, one_line(e)))
    return planned


def resolve(handle):
    """A node's result: a stored dict, or the Future's result; a task that Dask gave up on (its
    workers died too often) becomes an error result."""
    if isinstance(handle, dict):
        return handle
    try:
        return handle.result()
    except Exception as e:      # noqa: BLE001 - KilledWorker, a lost scheduler: the point's reason
        return {"error": f"{type(e).__name__}: {one_line(e)}", "failed_stage": handle.key.split("-")[0]}
