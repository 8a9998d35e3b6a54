"""The computed claims of the chapter "Residual networks" (book/resnet.md) that are not about lesion
mechanics: parameter counts against He et al.'s Table 6, what shortcut options and bottlenecks
cost (cnnbook.counting.accounting against Keras' own layers and the papers' formulas)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from cnnbook.counting import accounting, formulas
from cnnbook.nets import blocks, models, published
from cnnbook.resnet import lesion, unrolled

# the keras.applications models and ResNet-1202 (session fixtures, a minute or more to build) are
# shared by test_accounting, test_blocks, test_keras_internals, test_models, test_resnet_chapter
pytestmark = pytest.mark.xdist_group("keras_models")


def trainable_from_accounting(model) -> int:
    return int(accounting.layer_stats(model).trainable_params.sum())


def keras_trainable(model) -> int:
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


def printed_decimals(value: float) -> int:
    text = repr(float(value))
    return len(text.split(".")[1].rstrip("0")) if "." in text else 0


@pytest.fixture(scope="module")
def table6():
    return published.load("he2015_cifar10")


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_trainable_parameters_counted_by_accounting_match_table6(depth, table6):
    """The page's table: accounting's trainable count, rounded as the paper prints it."""
    row = table6.set_index("depth").loc[depth]
    network = models.resnet_cifar(depth, shortcut="A")
    counted = trainable_from_accounting(network)
    assert counted == keras_trainable(network)
    decimals = printed_decimals(row.params_millions)
    assert round(counted / 1e6, decimals) == row.params_millions


@pytest.mark.slow
def test_resnet1202_parameters_match_table6(table6, resnet1202):
    """The page says the test suite checks ResNet-1202 (too slow to build on the page)."""
    row = table6.set_index("depth").loc[1202]
    counted = trainable_from_accounting(resnet1202)
    assert round(counted / 1e6, printed_decimals(row.params_millions)) == row.params_millions


def test_total_parameters_would_not_match_table6_for_resnet56(table6):
    """Why the page compares trainable parameters: Keras' count_params adds batch norm's moving
    statistics, and for ResNet-56 that changes the printed 0.85M."""
    network = models.resnet_cifar(56)
    printed = table6.set_index("depth").loc[56].params_millions
    assert round(network.count_params() / 1e6, 2) != printed
    assert round(keras_trainable(network) / 1e6, 2) == printed


def test_option_b_adds_exactly_two_projections_with_their_batch_norms():
    option_a, option_b = models.resnet_cifar(56, "A"), models.resnet_cifar(56, "B")
    extra = trainable_from_accounting(option_b) - trainable_from_accounting(option_a)
    # 16 -> 32 and 32 -> 64 channels: 1x1 kernels without bias, then gamma and beta.
    assert extra == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    shortcut_weights = sum(
        int(np.prod(weight.shape))
        for name in ("stage2_block1", "stage3_block1")
        for layer in models.shortcut_layers(option_b.get_layer(name))
        for weight in layer.trainable_weights
    )
    assert extra == shortcut_weights
    # MACs: a strided 1x1 convolution on the 16x16 and 8x8 output maps.
    assert accounting.macs(option_b) - accounting.macs(option_a) == (
        16 * 16 * 16 * 32 + 8 * 8 * 32 * 64
    )


@pytest.mark.parametrize("size, channels", [(32, 16), (16, 32), (8, 64)])
def test_option_c_projection_costs_match_a_keras_1x1_convolution(size, channels):
    """The page's option C adds, on every shape-keeping block, a 1x1 convolution C -> C and a
    batch norm; accounting's formulas must agree with Keras' own layers."""
    inputs = keras.Input((size, size, channels))
    conv = keras.layers.Conv2D(channels, 1, use_bias=False)
    norm = keras.layers.BatchNormalization()
    projection = keras.Model(inputs, norm(conv(inputs)))
    expected = keras_trainable(projection)
    formula = (formulas.conv_params(1, channels, channels, use_bias=False)
               + formulas.batch_norm_param_counts(channels)[0])
    assert formula == expected
    assert formulas.conv_macs(size * size, 1, channels, channels) == accounting.macs(projection)


def test_option_c_counts_every_shape_keeping_block_of_resnet56():
    network = models.resnet_cifar(56)
    keeping = lesion.deletable_blocks(network, include_downsampling=False)
    assert len(keeping) == 27 - 2
    channels = [network.get_layer(name).output.shape[-1] for name in keeping]
    assert channels.count(16) == 9 and channels.count(32) == 8 and channels.count(64) == 8


def test_bottleneck_and_basic_block_have_similar_cost():
    """He et al. 2015, section 4.1: the 256-d bottleneck (1x1 64, 3x3 64, 1x1 256) and the 64-d
    basic block (two 3x3 64) have similar time complexity."""
    basic = models.residual_block((56, 56, 64), 64, name="basic")
    bottleneck = blocks.block_model(blocks.bottleneck_block, (56, 56, 256), filters=64)
    basic_weights = 2 * 3 * 3 * 64 * 64
    bottleneck_weights = 256 * 64 + 3 * 3 * 64 * 64 + 64 * 256
    assert accounting.macs(basic) == 56 * 56 * basic_weights
    assert accounting.macs(bottleneck) == 56 * 56 * bottleneck_weights
    assert trainable_from_accounting(basic) == basic_weights + 2 * (64 + 64)
    assert trainable_from_accounting(bottleneck) == bottleneck_weights + 2 * (64 + 64 + 256)
    assert 0.9 < accounting.macs(bottleneck) / accounting.macs(basic) < 1.0


def test_resnet56_has_27_blocks_and_a_path_for_every_subset_of_them():
    """The page's count of ResNet-56's paths: one per subset of the blocks a path enters,
    counted as the sum over path lengths of C(27, k) (the binomial theorem written out)."""
    network = models.resnet_cifar(56, preact=True)
    blocks_56 = len(models.block_names(network))
    assert blocks_56 == 3 * (56 - 2) // 6 == 27
    assert unrolled.num_paths(blocks_56) == sum(math.comb(blocks_56, k) for k in range(28))


# --- The results sections of the page (issue 13.3) ----------------------------------------------

PAGE = Path(__file__).resolve().parents[1] / "book" / "resnet.md"


def _prose(section: str) -> str:
    """The Markdown text of ``## section`` up to the next ``## ``: code cells and glued values
    removed, so what remains is what the page states in fixed words."""
    text = PAGE.read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start:end if end >= 0 else None]
    body = re.sub(r"```\{code-cell\}.*?\n```", "", body, flags=re.S)
    return re.sub(r"\{glue:text\}`[^`]*`", "GLUED", body)


@pytest.mark.parametrize("section", ["The degradation problem", "Lesion studies"])
def test_results_sections_state_no_measured_figure_in_fixed_words(section):
    """Every percentage or number of points that the runs produced is glued from the committed
    results: a fixed one would stay behind when the results are regenerated. What remains in
    fixed words are the papers' figures and the chance level."""
    allowed = {"about 6% error", "guessing: 10%", "than 2 points"}
    prose = _prose(section)
    for match in re.finditer(r"\d+(?:\.\d+)?\s?(?:%|points?\b)", prose):
        context = prose[max(match.start() - 12, 0):match.end() + 6]
        assert any(phrase in context for phrase in allowed), (
            f"fixed figure in {section!r}: ...{context!r}...")


def test_the_page_states_where_the_unrolled_view_is_exact_and_what_it_is_not():
    """Exact as a graph for pre-activation blocks; never a sum of per-path outputs, since each
    branch is nonlinear (issue 24: the page once called the view itself exact)."""
    box = PAGE.read_text().split("What the unrolled view is, and what it is not", 1)[1]
    box = box.split("```", 1)[0]
    assert "pre-activation block" in box and "is exactly that" in box
    assert "$f_2(y_0 + f_1(y_0))$ does not split into $f_2(y_0) + f_2(f_1(y_0))$" in box
    assert "Exact graph is not exact ensemble" in box
    assert "preact=True" in PAGE.read_text()  # the runs' residual networks are pre-activation


# --- Fixed words of the page about the committed runs, checked against them --------------------


def _converged_lesions():
    from cnnbook.resnet import converged

    return converged.load_converged_results()


def test_the_plain_network_falls_whichever_block_is_removed():
    """The page's fixed words: the plain-56 "falls to" its mean single-deletion accuracy, and a
    random deletion or swap leaves it lower than the whole network ("drops to")."""
    lesions = _converged_lesions()["lesion"]
    if "plain56" not in lesions:
        assert not _converged_lesions()["provenance"]["complete"]
        return
    plain = lesions["plain56"]
    kept = [row["accuracy"] for row in plain["single_block"] if row["deletable"]]
    assert np.mean(kept) < plain["baseline"]
    deletion = {row["num_deleted"]: row["mean"] for row in plain["deletion_summary"]}
    swaps = {row["num_swaps"]: row["mean"] for row in plain["reorder_summary"]}
    assert deletion[1] < plain["baseline"] and swaps[1] < plain["baseline"]
