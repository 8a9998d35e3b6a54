"""benchmarks/step_cost.py (issue 24.1): the profile that says where a training step's time goes
is added up right, and the FLOPs it credits each convolution with are Keras' own count."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from benchmark_scripts import benchmark_module

step_cost = benchmark_module("step_cost")


def _line(primitive, implementation, prop_kind, problem, ms):
    # the field layout oneDNN v3 prints under ONEDNN_VERBOSE=profile_exec
    return (f"onednn_verbose,v1,primitive,exec,cpu,{primitive},{implementation},{prop_kind},"
            f"src:bf16::blocked:acdb::f0 dst:bf16::blocked:acdb::f0,attr-scratchpad:user,"
            f"alg:convolution_direct,{problem},{ms}")


FIRST = "mb8_ic3oc16_ih32oh32kh3sh1dh0ph1_iw32ow32kw3sw1dw0pw1"
SECOND = "mb8_ic16oc32_ih32oh16kh3sh2dh0ph1_iw32ow16kw3sw2dw0pw1"


@pytest.mark.parametrize("problem, layer, input_shape", [
    (FIRST, keras.layers.Conv2D(16, 3, padding="same", use_bias=False), (8, 32, 32, 3)),
    (SECOND, keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False),
     (8, 32, 32, 16)),
    ("g4mb2_ic8oc8_ih10oh8kh3sh1dh0ph0_iw10ow8kw3sw1dw0pw0",
     keras.layers.Conv2D(8, 3, groups=4, use_bias=False), (2, 10, 10, 8)),
])
def test_convolution_flops_are_two_per_weight_per_output_position_as_keras_counts(
        problem, layer, input_shape):
    output = layer(np.zeros(input_shape, "float32"))
    # Keras' oracle: every weight is used once per output position of every image
    positions = input_shape[0] * output.shape[1] * output.shape[2]
    assert step_cost.convolution_flops(problem) == 2 * layer.count_params() * positions


def test_a_problem_that_is_not_a_2d_convolution_is_refused_by_name():
    with pytest.raises(ValueError, match="not a 2-D convolution problem"):
        step_cost.convolution_flops("mb8ic16ih32iw32")


def _step(scale):
    return [
        _line("reorder", "jit:uni", "undef", "16x3x3x3", 0.5 * scale),
        _line("convolution", "brg_conv_fwd:avx512_core_bf16", "forward_training", FIRST, 1.0),
        _line("convolution", "brg_conv_fwd:avx512_core_bf16", "forward_training", SECOND, 2.0),
        _line("batch_normalization", "bnorm_tbb_jit:avx512_core_bf16", "backward",
              "mb8ic32ih16iw16", 1.0),
        _line("convolution", "brg_conv_bwd:avx512_core_bf16", "backward_data", SECOND, 2.0),
        _line("convolution", "jit_bf16:avx512_core_bf16", "backward_weights", SECOND, 3.0),
        _line("convolution", "jit_bf16:avx512_core_bf16", "backward_weights", FIRST, 1.5),
    ]


def test_the_profile_leaves_out_the_warm_up_and_adds_up_each_kind_of_kernel_per_step():
    # A warm-up step whose reorder is 100 times slower (first use), then two steps, among noise
    lines = ["onednn_verbose,v1,info,cpu,runtime:threadpool,nthr:2", "some other output",
             *_step(100), step_cost.TIMED_STEPS_START, *_step(1), "more output", *_step(1)]
    summary = step_cost.summarise_onednn_profile(lines, steps=2)
    assert summary["steps"] == 2
    kinds = summary["kinds"]
    assert kinds["reorder"]["ms_per_step"] == 0.5  # the warm-up's 50 ms left out
    assert kinds["convolution, forward"]["ms_per_step"] == 3.0
    assert kinds["convolution, forward"]["calls_per_step"] == 2
    assert kinds["convolution, input gradient"]["ms_per_step"] == 2.0
    assert kinds["convolution, weight gradient"]["ms_per_step"] == 4.5
    assert kinds["convolution, weight gradient"]["implementations"] == [
        "jit_bf16:avx512_core_bf16"]
    assert kinds["batch_normalization, backward"]["ms_per_step"] == 1.0
    assert summary["kernel_ms_per_step"] == 0.5 + 3.0 + 1.0 + 2.0 + 4.5
    assert sum(kind["share"] for kind in kinds.values()) == pytest.approx(1, abs=1e-3)
    # FLOPs written out by hand: 2 * mb * ic * oc * oh * ow * kh * kw
    first = 2 * 8 * 3 * 16 * 32 * 32 * 3 * 3
    second = 2 * 8 * 16 * 32 * 16 * 16 * 3 * 3
    assert kinds["convolution, forward"]["gflop_per_step"] == round((first + second) / 1e9, 3)
    assert kinds["convolution, forward"]["gflop_per_s"] == round(
        (first + second) / 3.0e-3 / 1e9, 1)
    assert "gflop_per_s" not in kinds["reorder"]


def test_a_profile_that_is_not_the_whole_of_the_timed_steps_says_what_to_check():
    timed = [step_cost.TIMED_STEPS_START, *_step(1), *_step(1)]
    with pytest.raises(ValueError, match="found that line and 2 runs of the first convolution"):
        step_cost.summarise_onednn_profile(timed, steps=3)
    with pytest.raises(ValueError, match="found no such line"):
        step_cost.summarise_onednn_profile(_step(1), steps=1)
    with pytest.raises(ValueError, match="steps must be"):
        step_cost.summarise_onednn_profile(timed, steps=0)
