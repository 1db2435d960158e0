"""The layer graph inside a packed model file (format version 3; software/packfile.py reads and writes the file).

Manifest ``graph``: ``{"output": name, "nodes": [...]}``, each node
``{"name", "op", "inputs", "exponent", "signed", "attrs", "arrays": [keys], "parts": [...]}`` in
topological order (node 0 is the input); ``parts`` lists a matmul's matrices on the array
(``{"name", "in_features", "out_features", "groups", "nonzero_weights"}``). Arrays:

    node<i>.<key>              the node's arrays (matmul: bias and shift, int64; host: op constants)
    node<i>.part<j>.packed     F x G int32 packed weights
    node<i>.part<j>.select     F x G int32 select indices, in [0, alpha)
    node<i>.part<j>.groups     G x alpha int32 original column of each group slot, -1 for an empty slot
"""
from __future__ import annotations

import numpy as np

from software.frontend.graph import GraphError, resolve_target
from software.frontend.intgraph import ARRAY, POOL_OPS, SHAPE_OPS, ArrayLayer, GraphModel, IntNode
from software.packfile import packing_arrays
from software.packing.colcomb import ColumnCombining

VERSION = 3     # 2 is the chain with a whole-content digest (branch trust); 3 the layer graph
OPS = ("input", ARRAY, "add", "clamp", "host") + POOL_OPS + SHAPE_OPS


def graph_manifest_and_arrays(model: GraphModel):
    arrays, nodes = {}, []
    for i, node in enumerate(model.nodes):
        entry = {"name": node.name, "op": node.op, "inputs": list(node.inputs), "exponent": int(node.exponent),
                 "signed": bool(node.signed), "attrs": node.attrs, "arrays": sorted(node.arrays), "parts": []}
        for key, value in node.arrays.items():
            arrays[f"node{i}.{key}"] = np.asarray(value)
        for j, part in enumerate(node.parts):
            p = part.packing
            arrays.update(packing_arrays(f"node{i}.part{j}.", p))
            entry["parts"].append({"name": part.name, "in_features": part.in_features,
                                   "out_features": part.out_features, "groups": part.groups,
                                   "nonzero_weights": int(np.count_nonzero(p.packed))})
        nodes.append(entry)
    return {"output": model.output, "nodes": nodes}, arrays


def graph_from_manifest(manifest, arrays, config, term_budget, fail) -> GraphModel:
    """The GraphModel a version-2 manifest describes; ``fail(message)`` raises on anything inconsistent."""
    graph = manifest["graph"]
    w_lo, w_hi = config.weight_range
    nodes, seen, used = [], set(), set()
    for i, entry in enumerate(graph["nodes"]):
        name, op = str(entry["name"]), entry["op"]
        where = f"node {i} ('{name}')"
        if op not in OPS or (i == 0) != (op == "input"):
            fail(f"{where}: unknown or misplaced op {op!r}")
        if name in seen or any(src not in seen for src in entry["inputs"]):
            fail(f"{where}: inputs {entry['inputs']} are not earlier nodes")
        node_arrays = {}
        for key in entry["arrays"]:
            node_arrays[key] = arrays[f"node{i}.{key}"]
            used.add(f"node{i}.{key}")
        parts = []
        for j, part in enumerate(entry["parts"]):
            prefix = f"node{i}.part{j}."
            packed, select, groups = (arrays[prefix + k] for k in ("packed", "select", "groups"))
            used.update(prefix + k for k in ("packed", "select", "groups"))
            F, K, G = int(part["out_features"]), int(part["in_features"]), int(part["groups"])
            pw = f"{where} part {j}"
            if packed.shape != (F, G) or select.shape != (F, G) or groups.shape != (G, config.alpha):
                fail(f"{pw}: array shapes do not match {F} x {K} with {G} groups")
            if packed.size and (packed.min() < w_lo or packed.max() > w_hi):
                fail(f"{pw}: weights outside the {config.weight_width}-bit range")
            if select.size and (select.min() < 0 or select.max() >= config.alpha):
                fail(f"{pw}: select indices outside [0, {config.alpha})")
            columns = [[int(c) for c in row if c >= 0] for row in groups]
            if sorted(c for g in columns for c in g) != list(range(K)):
                fail(f"{pw}: groups do not cover its {K} inputs exactly once")
            if any(select[f, g] >= len(columns[g]) for f, g in zip(*np.nonzero(packed))):
                fail(f"{pw}: a select index points at an empty group slot")
            packing = ColumnCombining(groups=columns, packed=packed.astype(np.int64), select=select.astype(np.int64),
                                      alpha=config.alpha, in_features=K)
            parts.append(ArrayLayer(name=str(part["name"]), packing=packing))
        if op == ARRAY:
            F = sum(p.out_features for p in parts)
            if not parts or any(node_arrays.get(k, np.zeros(0)).shape != (F,) for k in ("bias", "shift")):
                fail(f"{where}: bias and shift must hold one entry per output channel ({F})")
            shift = node_arrays["shift"]
            if shift.size and (shift.min() < -62 or shift.max() > 62):
                fail(f"{where}: shifts outside [-62, 62]")
            node_arrays = {k: v.astype(np.int64) for k, v in node_arrays.items()}
        if op == "host":
            try:
                resolve_target(str(entry["attrs"]["target"]))
            except GraphError as e:
                fail(f"{where}: {e}")
        nodes.append(IntNode(name=name, op=op, inputs=tuple(entry["inputs"]), exponent=int(entry["exponent"]),
                             signed=bool(entry["signed"]), attrs=dict(entry["attrs"]), arrays=node_arrays,
                             parts=tuple(parts)))
        seen.add(name)
    if graph["output"] not in seen:
        fail(f"the output {graph['output']!r} is not a node")
    if used != set(arrays):
        fail("arrays the manifest does not list")
    model = GraphModel(config=config, input_shape=tuple(int(d) for d in manifest["input_shape"]), nodes=tuple(nodes),
                       output=str(graph["output"]), term_budget=term_budget)
    try:        # a sample of zeros through the graph: every shape and reference fits
        model.run_golden(np.zeros((1,) + model.input_shape, dtype=np.int64))
    except (ValueError, IndexError, KeyError, TypeError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fail(f"the graph does not run: {first}")
    return model
