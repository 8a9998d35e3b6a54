"""Every number that the chapter "Known ConvNet architectures" computes, asserted against an
independent formula, Keras itself or the published figure it is shown next to; and the
chapter's data (years, sources) checked against the bibliography and the page's headings."""

from __future__ import annotations

import math
import re
from pathlib import Path

import keras
import pandas as pd
import pytest

from cnnbook.counting import accounting, formulas, sizing
from cnnbook.nets import blocks, models, published
from cnnbook.nets import survey as survey_module
from cnnbook.nets.blocks import block_model

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGE = REPO_ROOT / "book" / "architectures.md"


# --------------------------------------------------------------------------------------------
# The data files and the page's text


def _bib_keys() -> set[str]:
    text = (REPO_ROOT / "book" / "references.bib").read_text()
    return set(re.findall(r"^@\w+\{([^,]+),", text, flags=re.M))


def test_every_source_and_citation_is_in_the_bibliography():
    keys = _bib_keys()
    for name in ("architectures", "efficientnet_scaling", "torchvision_param_counts",
                 "squeezenet_fire_modules", "googlenet_inception_modules", "senet_overhead"):
        sources = set(published.load(name)["source"])
        assert sources <= keys, f"{name}.csv cites {sources - keys}, not in references.bib"
    cited = set()
    for group in re.findall(r"\{cite:[pt]\}`([^`]+)`", PAGE.read_text()):
        cited.update(key.strip() for key in group.split(","))
    assert cited <= keys, f"the page cites {cited - keys}, not in references.bib"


def test_the_chapter_covers_the_architectures_the_course_asks_for():
    names = set(survey_module.architecture_years()["architecture"])
    for required in ("LeNet-5", "AlexNet", "ZFNet", "VGG", "Network in Network",
                     "GoogLeNet (Inception v1)", "Inception v3", "Inception v4 / Inception-ResNet",
                     "ResNet", "Pre-activation ResNet", "ResNeXt", "DenseNet", "Xception",
                     "SqueezeNet", "MobileNet", "MobileNetV2", "MobileNetV3", "ShuffleNet",
                     "SENet", "EfficientNet", "RegNet", "ConvNeXt", "ConvNeXt V2"):
        assert required in names, required


def test_years_in_the_page_headings_match_the_data_file():
    """A heading "### ResNet (2015) and pre-activation ResNet (2016)" must name, for each year
    it gives, an architecture of architectures.csv first published that year."""
    table = survey_module.architecture_years()
    headings = re.findall(r"^### (.+)$", PAGE.read_text(), flags=re.M)
    checked = 0
    for heading in headings:
        years = [int(year) for year in re.findall(r"\b(19\d\d|20\d\d)\b", heading)]
        if not years:
            continue
        named = [row for row in table.itertuples()
                 if re.split(r"[ (]", row.architecture)[0].lower() in heading.lower()]
        assert named, f"heading {heading!r} names no architecture of architectures.csv"
        for year in years:
            assert any(row.year == year for row in named), (
                f"heading {heading!r}: no architecture it names was first published in {year}"
            )
        checked += 1
    assert checked >= 17


def test_every_published_imagenet_model_has_an_architecture_and_a_year():
    catalogue = survey_module.published_models()
    assert catalogue["year"].between(1998, 2023).all()
    assert catalogue.set_index("model").loc["ResNet50", "architecture"] == "ResNet"
    # The year plot starts with AlexNet, published at NeurIPS 2012 (Krizhevsky et al.).
    earliest = catalogue.sort_values("year").iloc[0]
    assert (earliest["model"], earliest["year"]) == ("AlexNet", 2012)


def test_efficientnet_constants_roughly_double_the_cost_per_step():
    row = published.load("efficientnet_scaling").iloc[0]
    # Tan and Le's constraint alpha * beta^2 * gamma^2 ~ 2, against the constants transcribed
    factor = row["alpha"] * row["beta"] ** 2 * row["gamma"] ** 2
    assert factor == pytest.approx(row["constraint"], rel=0.05)


# --------------------------------------------------------------------------------------------
# LeNet-5, AlexNet, ZFNet, VGG: closed-form counts


def test_lenet5_parameters_and_macs_follow_the_layer_formulas():
    model = models.lenet5()
    # (k^2 C_in + 1) C_out for c1, c3, c5; (C_in + 1) C_out for f6 and the output.
    assert model.count_params() == 156 + 2_416 + 48_120 + 10_164 + 850
    macs = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 120 * 400 + 120 * 84 + 84 * 10
    assert accounting.macs(model) == macs


ALEXNET_CONVS = [  # (output size, kernel, in channels, filters)
    (55, 11, 3, 96), (27, 5, 96, 256), (13, 3, 256, 384), (13, 3, 384, 384), (13, 3, 384, 256),
]
ALEXNET_DENSES = [(9216, 4096), (4096, 4096), (4096, 1000)]


def test_alexnet_parameter_and_mac_shares_of_the_page():
    stats = accounting.layer_stats(models.alexnet())
    conv_params = sum((k * k * c + 1) * f for _, k, c, f in ALEXNET_CONVS)
    dense_params = sum((c + 1) * f for c, f in ALEXNET_DENSES)
    conv_macs = sum(size * size * k * k * c * f for size, k, c, f in ALEXNET_CONVS)
    dense_macs = sum(c * f for c, f in ALEXNET_DENSES)
    assert stats["params"].sum() == conv_params + dense_params
    is_dense = stats["type"] == "Dense"
    assert stats.loc[is_dense, "params"].sum() == dense_params
    assert stats["macs"].sum() == conv_macs + dense_macs
    assert stats.loc[~is_dense, "macs"].sum() == conv_macs
    # The page's point: the dense layers hold most weights, the convolutions most compute.
    assert dense_params > 0.9 * (conv_params + dense_params)
    assert conv_macs > 0.9 * (conv_macs + dense_macs)
    # The paper's two-GPU layout: conv2, conv4 and conv5 see half of the channels, which gives
    # the paper's "60 million parameters".
    two_towers = models.alexnet(two_towers=True).count_params()
    assert two_towers == conv_params + dense_params - (
        25 * 96 * 256 + 9 * 384 * 384 + 9 * 384 * 256
    ) // 2
    assert round(two_towers / 1e6) == 61 and int(two_towers / 1e6) == 60


def test_zfnet_first_layer_against_alexnet_first_layer():
    """The first layers' output sizes as the papers print them (AlexNet 55, ZFNet 110)."""
    assert sizing.conv_output_size(227, 11, 4) == 55
    assert sizing.conv_output_size(224, 7, 2, padding=1) == 110


def test_small_stacked_filters_save_weights():
    channels = 256
    layer = keras.layers.Conv2D(channels, 3, use_bias=False)
    layer.build((None, 8, 8, channels))
    assert layer.count_params() == formulas.conv_params(3, channels, channels, use_bias=False)
    assert formulas.conv_params(5, channels, channels, use_bias=False) == 25 * channels**2
    assert formulas.conv_params(7, channels, channels, use_bias=False) == 49 * channels**2
    # three stacked 3x3 see a 7x7 window (Simonyan and Zisserman), measured in Keras
    assert sizing.receptive_field([(3, 1)] * 3) == sizing.measured_receptive_field(
        [(3, 1, 1)] * 3) == 7


# --------------------------------------------------------------------------------------------
# The blocks as the page builds them


def test_inception_3a_naive_and_reduced_costs():
    reduced = block_model(blocks.inception_module, (28, 28, 192), filters_1x1=64, reduce_3x3=96,
                          filters_3x3=128, reduce_5x5=16, filters_5x5=32, filters_pool_proj=32)
    naive = block_model(blocks.inception_module, (28, 28, 192), filters_1x1=64, filters_3x3=128,
                        filters_5x5=32)
    reduced_weights = 192 * 64 + 192 * 96 + 9 * 96 * 128 + 192 * 16 + 25 * 16 * 32 + 192 * 32
    naive_weights = 192 * 64 + 9 * 192 * 128 + 25 * 192 * 32
    assert reduced.count_params() == reduced_weights + (64 + 96 + 128 + 16 + 32 + 32)
    assert naive.count_params() == naive_weights + (64 + 128 + 32)
    assert accounting.macs(reduced) == 28 * 28 * reduced_weights
    assert accounting.macs(naive) == 28 * 28 * naive_weights
    assert reduced.output.shape[-1] == 256 and naive.output.shape[-1] == 64 + 128 + 32 + 192
    table = published.load("googlenet_inception_modules").set_index("module")
    assert round(accounting.macs(reduced) / 1e6) == table.loc["inception_3a", "ops_millions"]


def test_residual_block_costs_of_the_page():
    bottleneck = block_model(blocks.bottleneck_block, (56, 56, 256), filters=64)
    preactivation = block_model(blocks.bottleneck_block, (56, 56, 256), filters=64,
                                preactivation=True)
    resnext = block_model(blocks.bottleneck_block, (56, 56, 256), filters=128, groups=32,
                          expansion=2)
    bottleneck_weights = 256 * 64 + 9 * 64 * 64 + 64 * 256
    resnext_weights = 256 * 128 + 9 * 128 * 128 // 32 + 128 * 256
    assert bottleneck.count_params() == bottleneck_weights + 4 * (64 + 64 + 256)
    assert preactivation.count_params() == bottleneck_weights + 4 * (256 + 64 + 64)
    assert resnext.count_params() == resnext_weights + 4 * (128 + 128 + 256)
    assert accounting.macs(bottleneck) == 56 * 56 * bottleneck_weights
    assert accounting.macs(resnext) == 56 * 56 * resnext_weights


DOWNSAMPLING_BOTTLENECKS = [(56, 256, 128), (28, 512, 256), (14, 1024, 512)]
"""ResNet-50's three downsampling bottlenecks: (input size, input channels, width)."""


def stride_on_3x3_extra_macs() -> int:
    """MACs that moving the stride to the 3x3 adds to ResNet-50: ``3 (H/2)^2 C F`` per block."""
    return sum(3 * (size // 2) ** 2 * channels * width
               for size, channels, width in DOWNSAMPLING_BOTTLENECKS)


def test_resnet_v1_5_stride_placement_explains_torchvision_macs():
    """Moving the stride of a downsampling bottleneck from its first 1x1 convolution to its 3x3
    makes the 1x1 run on the input's full resolution: 3 (H/2)^2 C F more MACs per block."""
    for size, channels, width in DOWNSAMPLING_BOTTLENECKS:
        on_3x3 = block_model(blocks.bottleneck_block, (size, size, channels), filters=width,
                             strides=2)
        on_1x1 = block_model(blocks.bottleneck_block, (size, size, channels), filters=width,
                             strides=2, stride_position="1x1")
        assert on_3x3.count_params() == on_1x1.count_params()
        assert on_3x3.output.shape == on_1x1.output.shape
        difference = accounting.macs(on_3x3) - accounting.macs(on_1x1)
        assert difference == 3 * (size // 2) ** 2 * channels * width


def test_efficient_block_costs_of_the_page():
    fire = block_model(blocks.fire_module, (55, 55, 96), squeeze=16, expand_1x1=64, expand_3x3=64)
    fire_table = published.load("squeezenet_fire_modules").set_index("module")
    assert fire.count_params() == fire_table.loc["fire2", "params"]  # Iandola et al., Table 1
    shuffle = block_model(blocks.shufflenet_unit, (28, 28, 240), filters=240, groups=3)
    ungrouped = block_model(blocks.shufflenet_unit, (28, 28, 240), filters=240, groups=1)
    assert shuffle.count_params() == 240 * 60 // 3 + 4 * 60 + 9 * 60 + 4 * 60 + 60 * 240 // 3 \
        + 4 * 240
    assert ungrouped.count_params() == blocks.shufflenet_unit_params(240, 240, 1)
    inverted = block_model(blocks.inverted_residual_block, (56, 56, 24), filters=24)
    expanded = 6 * 24  # expand 1x1, BN, 3x3 depthwise, BN, project 1x1, BN
    assert inverted.count_params() == (24 * expanded + 4 * expanded + 9 * expanded
                                       + 4 * expanded + expanded * 24 + 4 * 24)
    # EfficientNet's MBConv squeezes to a quarter of the block's *input* channels (40 / 4 = 10):
    # squeeze_ratio 24 on the 240 expanded channels.
    mbconv = block_model(blocks.inverted_residual_block, (28, 28, 40), filters=40, expansion=6,
                         kernel_size=5, squeeze_ratio=24, activation="swish")
    squeeze_layer = next(layer for layer in mbconv.layers if layer.name.endswith("_se_reduce"))
    assert squeeze_layer.units == 10
    assert mbconv.count_params() == (40 * 240 + 4 * 240) + (25 * 240 + 4 * 240) + (
        240 * 10 + 10 + 10 * 240 + 240) + (240 * 40 + 4 * 40)
    regnet = block_model(blocks.bottleneck_block, (28, 28, 96), filters=96, expansion=1, groups=4)
    assert regnet.count_params() == 96 * 96 + 9 * 96 * 96 // 4 + 96 * 96 + 3 * 4 * 96


def test_squeeze_excitation_costs_of_the_page():
    se = block_model(blocks.squeeze_excitation, (56, 56, 256), ratio=16)
    assert se.count_params() == 256 * 16 + 16 + 16 * 256 + 256
    assert accounting.macs(se) == 2 * 256 * 16
    stages = [(3, 256), (4, 512), (6, 1024), (3, 2048)]  # ResNet-50's blocks and channels
    extra = sum(n * blocks.squeeze_excitation_params(c, 16) for n, c in stages)
    assert extra == sum(n * (2 * c * (c // 16) + c // 16 + c) for n, c in stages)
    senet = published.load("senet_overhead").iloc[0]
    assert round(extra / 1e6, 1) == senet.extra_params_millions


def test_convnext_blocks_of_the_page():
    for version, formula in ((1, 8 * 96**2 + 58 * 96), (2, 8 * 96**2 + 65 * 96)):
        model = block_model(blocks.convnext_block, (56, 56, 96), version=version)
        assert model.count_params() == formula


# --------------------------------------------------------------------------------------------
# The survey table: the Keras models against the published figures


def _printed_decimals(value: float) -> int:
    return len(repr(float(value)).split(".")[1])


@pytest.fixture(scope="module")
def survey():
    return survey_module.survey_table(survey_module.computed_costs()).set_index("model")


PARAMS_NOT_COMPARED = {
    "LeNet-5": "no ImageNet row: no published parameter count in imagenet_models.csv",
    "AlexNet": "the published 61.1M is torchvision's variant, not the network built here",
    "MobileNetV3-Large": "the paper counts the learnt weights only: its own test below",
}
"""The survey networks whose parameters the loop below leaves out, and why."""

MACS_NOT_COMPARED = {
    "LeNet-5": "no ImageNet row: no published MAC count",
    "AlexNet": "the published 0.714G is torchvision's variant, not the network built here",
    "Xception": "no published MAC count in imagenet_models.csv",
    "ResNet50": "torchvision's figure is ResNet v1.5: compared after the loop",
}
"""The survey networks whose MACs the loop below leaves out, and why."""


@pytest.mark.slow
def test_computed_parameters_match_the_published_ones(survey):
    checked = []
    for name, row in survey.iterrows():
        # skipped: the rows of PARAMS_NOT_COMPARED, for the reasons given there
        if not row["same_as_published"] or pd.isna(row["published_params_millions"]):
            continue
        if name == "MobileNetV3-Large":
            continue  # its own test below
        published_millions = float(row["published_params_millions"])
        decimals = _printed_decimals(published_millions)
        if decimals >= 6:  # printed to the unit (from model.summary())
            assert row["params"] == round(published_millions * 1e6), name
        else:  # printed rounded to `decimals` places of millions
            assert round(row["params"] / 1e6, decimals) == pytest.approx(published_millions), name
        checked.append(name)
    # every survey network but the ones left out for a stated reason, so the loop cannot
    # silently check nothing (or drop a network whose published row lost its figure)
    assert set(PARAMS_NOT_COMPARED) <= set(survey.index)
    assert sorted(checked) == sorted(set(survey.index) - set(PARAMS_NOT_COMPARED))
    assert len(checked) == len(survey_module.SURVEY_MODELS) - len(PARAMS_NOT_COMPARED)
    assert survey.loc["LeNet-5", "params"] == models.lenet5().count_params()
    assert survey.loc["AlexNet", "params"] == models.alexnet().count_params()


@pytest.mark.slow
def test_computed_macs_round_to_the_published_ones(survey):
    """Each published MAC count, to the decimals it is printed with (ResNet-50: see below)."""
    checked = []
    for name, row in survey.iterrows():
        # skipped: the rows of MACS_NOT_COMPARED, for the reasons given there
        if not row["same_as_published"] or pd.isna(row["published_macs_g"]) or name == "ResNet50":
            continue
        published_g = float(row["published_macs_g"])
        assert row["image_size"] == row["published_macs_image_size"], name
        assert round(row["macs_g"], _printed_decimals(published_g)) == published_g, name
        checked.append(name)
    assert set(MACS_NOT_COMPARED) <= set(survey.index)
    assert sorted(checked) == sorted(set(survey.index) - set(MACS_NOT_COMPARED))
    assert len(checked) == len(survey_module.SURVEY_MODELS) - len(MACS_NOT_COMPARED)
    resnet50 = survey.loc["ResNet50"]
    paper = published.load("he2015_imagenet_macs").set_index("network").loc["ResNet-50", "macs_g"]
    assert resnet50["macs_g"] == pytest.approx(paper, rel=0.02)
    assert round((resnet50["macs"] + stride_on_3x3_extra_macs()) / 1e9, 2) == float(
        resnet50["published_macs_g"])


@pytest.mark.slow
def test_mobilenet_v3_count_is_torchvisions_plus_batch_norm_statistics(survey):
    row = survey.loc["MobileNetV3-Large"]
    torchvision = published.load("torchvision_param_counts").set_index("model")
    assert row["trainable_params"] == torchvision.loc["MobileNetV3-Large", "num_params"]
    stats = row["layer_stats"]  # the moving mean and variance of every batch norm: 2 C each
    batch_norm_channels = [shape[-1] for shape in
                           stats.loc[stats["type"] == "BatchNormalization", "output_shape"]]
    assert row["params"] - row["trainable_params"] == 2 * sum(batch_norm_channels)
    # The paper's 5.4M is the learnt count truncated, not rounded.
    assert math.floor(row["trainable_params"] / 1e5) / 10 == float(row["published_params_millions"])


@pytest.mark.slow
def test_survey_ratios_glued_in_the_page(survey):
    """The ratios the page glues, against the same ratios of the published figures."""
    b0, b7 = survey.loc["EfficientNetB0"], survey.loc["EfficientNetB7"]
    assert (b0["image_size"], b7["image_size"]) == (224, 600)
    vgg16 = survey.loc["VGG16"]
    for big, small in ((b7, b0), (vgg16, b0)):
        assert big["macs"] / small["macs"] == pytest.approx(
            big["published_macs_g"] / small["published_macs_g"], rel=0.05)
        assert big["params"] / small["params"] == pytest.approx(
            big["published_params_millions"] / small["published_params_millions"], rel=0.05)
    assert list(survey["year"]) == sorted(survey["year"])


@pytest.mark.slow
def test_vgg16_dense_layers_hold_the_parameters_and_convolutions_do_the_work(survey):
    stats = survey.loc["VGG16", "layer_stats"]
    assert stats["params"].sum() == survey.loc["VGG16", "params"]
    dense = stats["type"] == "Dense"
    dense_params = (7 * 7 * 512 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * 1000
    assert stats.loc[dense, "params"].sum() == dense_params
    assert dense_params > 0.85 * survey.loc["VGG16", "params"]  # "most of the parameters"
    convs = [(224, 3, 64), (224, 64, 64), (112, 64, 128), (112, 128, 128)] + [
        (56, 128, 256), (56, 256, 256), (56, 256, 256), (28, 256, 512)] + [(28, 512, 512)] * 2 \
        + [(14, 512, 512)] * 3  # (size, C_in, C_out) of the 13 3x3 convolutions, "same"
    conv_macs = sum(size * size * 9 * c_in * c_out for size, c_in, c_out in convs)
    assert stats.loc[stats["type"] == "Conv2D", "macs"].sum() == conv_macs


# --------------------------------------------------------------------------------------------
# Speed: well-formed measurements and the 20-frames-per-second answer (no time is asserted)


def test_models_reaching_a_frame_rate_reads_batch_size_one_fastest_first():
    speeds = pd.DataFrame({
        "model": ["a", "a", "b", "b", "c", "c"],
        "batch_size": [1, 32, 1, 32, 1, 32],
        "images_per_second": [25.0, 90.0, 19.9, 60.0, 40.0, 35.0],
    })
    assert survey_module.models_reaching(speeds, 20) == ["c", "a"]
    assert survey_module.models_reaching(speeds, 100) == []
    with pytest.raises(ValueError, match="frames_per_second"):
        survey_module.models_reaching(speeds, 0)
    with pytest.raises(ValueError, match="batch_size == 1"):
        survey_module.models_reaching(speeds[speeds["batch_size"] == 32])


def test_measure_speeds_gives_one_row_per_model_and_batch_size():
    speeds = survey_module.measure_speeds(["MobileNetV2"], batch_sizes=(1, 2), iterations=1)
    assert list(speeds["batch_size"]) == [1, 2]
    assert (speeds["images_per_second"] > 0).all()
    assert (speeds["timed_calls"] == 1).all()
    assert set(survey_module.SPEED_MODELS) <= {m.name for m in survey_module.SURVEY_MODELS}


def test_unknown_survey_models_are_rejected_with_the_list_of_names():
    with pytest.raises(ValueError, match="ResNet50"):
        survey_module.survey_model("ResNet-51")
    with pytest.raises(ValueError, match="ResNet50"):
        survey_module.computed_costs(["LeNet-5", "ResNet-51"])  # checked before building


def test_computed_costs_refuses_a_single_string_instead_of_iterating_its_characters():
    with pytest.raises(ValueError, match=r"names must be a list of survey model names, e\.g\. "
                                         r"\['VGG16'\]"):
        survey_module.computed_costs("VGG16")
    costs = survey_module.computed_costs(["LeNet-5"])
    assert list(costs["model"]) == ["LeNet-5"]
    assert costs.loc[0, "params"] == models.lenet5().count_params()
