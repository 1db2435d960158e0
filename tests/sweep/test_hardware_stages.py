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
