"""Shared stages are one node: the keys say what each stage depends on, and nothing else."""
import dataclasses

from sweep import cache as cache_module
from sweep.graph import compress_config, point_nodes
from sweep.sweepfile import parse


def nodes_of(data, stages=("compress", "cycles")):
    plan = parse({"stages": list(stages), **data})
    return [point_nodes(p, plan.stages) for p in plan.points]


def test_one_compressed_model_for_several_arrays_and_one_dense_model_per_seed():
    points = nodes_of({"axes": {"alpha": [1, 8], "rows": [8, 16], "max_batch": [32, 64]}})
    compress = {n["compress"].key for n in points}
    cycles = {n["cycles"].key for n in points}
    dense = {n["compress"].parents[0][1].key for n in points}
    assert len(compress) == 2 and len(cycles) == 8 and len(dense) == 1
    other_seed = nodes_of({"fixed": {"seed": 1}})[0]
    assert other_seed["compress"].parents[0][1].key not in dense


def test_a_method_s_key_ignores_the_knobs_it_does_not_read():
    dense = nodes_of({"fixed": {"method": "dense", "alpha": 1}, "axes": {"gamma": [0.0, 0.5], "nm": [[2, 4], [1, 4]]}})
    assert len({n["compress"].key for n in dense}) == 1
    colcomb = nodes_of({"axes": {"gamma": [0.0, 0.5]}})
    assert len({n["compress"].key for n in colcomb}) == 2
    int8 = nodes_of({"axes": {"weight_terms": [1.0, 1.75]}})
    tq = nodes_of({"fixed": {"quant": "tq"}, "axes": {"weight_terms": [1.0, 1.75]}})
    assert len({n["compress"].key for n in int8}) == 1 and len({n["compress"].key for n in tq}) == 2


def test_tile_wise_pruning_depends_on_the_rows_it_defaults_its_tiles_to():
    plan = parse({"fixed": {"method": "tilewise"}, "axes": {"rows": [8, 16]}})
    configs = [compress_config(p.options()) for p in plan.points]
    assert [c["tile_size"] for c in configs] == [8, 16] and configs[0]["rows"] == configs[1]["rows"]
    pinned = parse({"fixed": {"method": "tilewise", "tile_size": 8}, "axes": {"rows": [8, 16]}})
    assert len({point_nodes(p, ("compress",))["compress"].key for p in pinned.points}) == 1


def test_one_design_for_the_rtl_check_and_every_board():
    points = nodes_of({"axes": {"board": ["icebreaker", "ulx3s-85f"]}}, stages=("compress", "rtl", "fpga"))
    assert points[0]["design"].key == points[1]["design"].key
    assert points[0]["rtl"].key == points[1]["rtl"].key
    assert points[0]["fpga"].key != points[1]["fpga"].key
    assert dict(points[0]["fpga"].parents)["design"] is points[0]["design"]
    no_rtl = nodes_of({"fixed": {"rtl_images": 0}}, stages=("compress", "rtl"))[0]
    assert "rtl" not in no_rtl and "design" not in no_rtl


def test_keys_change_with_the_code_the_stage_runs(monkeypatch):
    node = nodes_of({})[0]["cycles"]
    before = node.key
    real = cache_module.code_version.__wrapped__

    def changed(packages):
        return real(packages) + ("-edited" if "software" in packages else "")
    monkeypatch.setattr("sweep.graph.code_version", changed)
    assert dataclasses.replace(node).key != before


def test_refused_configuration_fails_before_any_task():
    from sweep.graph import plan_points
    plan = parse({"points": [{"alpha": 0}, {"alpha": 8}]})
    planned = plan_points(plan.points, plan.stages)
    assert planned[0][1] is None and "alpha" in planned[0][2]
    assert planned[1][2] is None
