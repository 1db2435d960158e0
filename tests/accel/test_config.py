"""spec/model.py: the accelerator's configuration, its checks and its manifest."""

import pytest

from spec import ConfigError, ModelConfig, config_from_manifest, manifest

SHA = "ab" * 32
BASE = dict(rows=4, cols=4, alpha=8, in_features=64, layers=((128, 8, 32), (64, 16, 16), (10, 8, 3)), model_sha256=SHA)


def test_derived_sizes():
    cfg = ModelConfig(**BASE)
    assert cfg.tiles == 32 * 2 + 16 * 4 + 3 * 2 == 134
    assert cfg.weight_beats == 134 * 4
    assert cfg.lanes == 32 and cfg.region_words == 16 * 4 and cfg.act_depth == 128
    assert cfg.in_features_of == [64, 128, 64] and cfg.out_features == 10
    assert cfg.array.max_batch == cfg.batch and not cfg.array.act_signed


@pytest.mark.parametrize("change,message", [
    (dict(batch=0), "batch"),
    (dict(model_sha256="xyz"), "model_sha256"),
    (dict(layers=()), "layers"),
    (dict(layers=((10, 8),)), "layer 0"),
    (dict(layers=((10, 8, 2),)), "cannot hold 10"),
    (dict(rows=64, cols=2, alpha=8), "at most cols"),
    (dict(logit_shift=40), "logit_shift"),
    (dict(alpha=0), "alpha"),
])
def test_bad_configurations(change, message):
    with pytest.raises(ConfigError, match=message) as error:
        ModelConfig(**{**BASE, **change})
    assert "\n" not in str(error.value)


def test_manifest_round_trip():
    cfg = ModelConfig(**BASE)
    text = "module sparsegen_model(); endmodule\n"
    m = manifest(cfg, text)
    assert m["unit"] == "model_accelerator" and m["model_sha256"] == SHA
    import json
    assert config_from_manifest(json.loads(json.dumps(m))) == cfg
    m["ports"][2]["payload_width"] += 1
    with pytest.raises(ConfigError, match="ports"):
        config_from_manifest(json.loads(json.dumps(m)))


def test_widths_follow_the_model():
    cfg = ModelConfig(**{**BASE, "acc_width": 19, "bias_width": 24, "shift_width": 3, "left_width": 3,
                         "logit_shift": 5})
    assert cfg.total_width == 25 and cfg.logit_width == 30
    fields = dict(cfg.table_fields)
    assert fields["bias"] == 24 and fields["pre_shift"] == 3 and fields["left"] == 3
    with pytest.raises(ConfigError, match="does not fit left_width"):
        ModelConfig(**{**BASE, "left_width": 2, "logit_shift": 4})
    assert "left" not in dict(ModelConfig(**{**BASE, "left_width": 0}).table_fields)
