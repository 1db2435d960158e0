"""The RTL check and the FPGA build as sweep stages: one generated design feeds both."""
import pytest
from distributed import Client, LocalCluster

from sweep.cache import Cache
from sweep.cli import run
from sweep.sweepfile import parse


@pytest.mark.slow
def test_rtl_check_and_fpga_build_share_one_design(tmp_path):
    plan = parse({"stages": ["compress", "cycles", "rtl", "fpga"],
                  "fixed": {"epochs": 2, "finetune_epochs": 1, "rows": 2, "alpha": 4, "rtl_images": 8,
                            "board": "icebreaker"}})
    cache = Cache(tmp_path)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      resources={"FPGA_BUILD": 1}) as cluster, Client(cluster) as client:
        rows, submit = run(plan, lambda: client, cache, progress_bar=False, log=lambda *_: None)
    row = rows[0]
    assert row["status"] == "ok", row["error"]
    assert row["rtl_logits_identical"] is True and row["rtl_images"] == 8
    assert row["rtl_cycles"] == row["rtl_model_cycles"] > 0
    assert row["design_name"] == plan.points[0].options().array_config().design_name
    assert row["lut4"] > 0 and row["ff"] > 0 and row["fmax_mhz"] > 0
    assert row["images_per_s"] == pytest.approx(row["fmax_mhz"] * 1e6 * row["test_images"] / row["cycles"])
    designs = [e for e in cache.events() if e["stage"] == "design" and e["event"] == "done"]
    assert len(designs) == 1 and submit.submitted == 6     # dense, compress, cycles, design, rtl, fpga


@pytest.mark.parametrize("error,kept", [("stopped", False), ("does not fit", True)])
def test_a_build_stopped_from_outside_is_not_cached(tmp_path, monkeypatch, error, kept):
    """A design that does not fit is a result, kept in the cache; tools stopped by a signal from
    outside (fpga.build.ToolsStopped) are not: the next run builds the point again."""
    import types

    from fpga.build import BuildError, ToolsStopped
    from sweep import stages

    def run(config, parents, staging):
        raise ToolsStopped("the ecp5 toolchain was stopped by SIGTERM from outside the build") \
            if error == "stopped" else BuildError("the design does not fit the LFE5U-25F")

    monkeypatch.setitem(stages.STAGES, "fpga", types.SimpleNamespace(run=run))
    result = stages.run_node("fpga", "key0", {}, {}, str(tmp_path))
    assert result["failed_stage"] == "fpga" and result["error"].startswith("the ")
    assert (Cache(str(tmp_path)).get("key0") is not None) == kept
