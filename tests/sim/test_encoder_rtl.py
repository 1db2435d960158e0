"""A whole (small) encoder layer through the hardware in Verilator: a random BERT layer of MiniLM's
structure (hidden 32, 2 heads of 16, FFN 64 column-combined with alpha 4), its six matrices on a
generated 8x8 alpha 4 array and its heads on a generated d 16, L 16 attention unit, layer norm, GELU
and residuals in the integer host model. Every stage's integers must equal the golden run's and
every hardware stage's RTL cycles its cycle model's. The real MiniLM layer runs by
`python benchmarks/minilm.py --run RUN --encoder-rtl` (about two minutes of builds and simulation)."""

import numpy as np
import pytest

from sim.encoder import run_layer
from software.distill import encoder_int as ei
from spec.array import ArrayConfig
from spec.attention import AttentionConfig
from tests.software.distill.tiny_layer import hidden_states, tiny_layer


@pytest.mark.slow
def test_small_encoder_layer_is_bit_exact_with_cycles_equal():
    layer, groups = tiny_layer()
    integer = ei.from_float(layer, [hidden_states(8, 32, seed) for seed in range(1, 9)],
                            AttentionConfig(head_dim=16, max_len=16), groups)
    h0 = integer.quantize_input(hidden_states(11, 32, 100).numpy())
    run = run_layer(integer, h0, ArrayConfig(rows=8, cols=8, alpha=4))
    assert [s.stage for s in run.stages] == ["query", "key", "value", "attention", "attention_output",
                                             "intermediate", "output"]
    assert all(s.exact for s in run.stages), [s.stage for s in run.stages if not s.exact]
    assert run.mismatched == []
    for stage in run.stages:
        assert stage.rtl_cycles == stage.model_cycles, stage
    # The FFN matrices ran column-combined: fewer tiles than the dense 64x32 would need (8 x 4 = 32).
    tiles = {s.stage: s.work for s in run.stages}
    assert tiles["query"] == 16 and tiles["intermediate"] < 32
    # The golden run is the integer layer the host model defines, and it tracks the float layer.
    assert np.array_equal(run.rtl["h2"], integer.run(h0)["h2"])
    close = ei.Closeness.of(integer.output_float(run.rtl["h2"]), ei.float_stages(layer, hidden_states(11, 32, 100))["out"].numpy())
    assert close.cosine > 0.995
