"""cnnbook.resnet.unrolled: the path counts of the unrolled view against a brute-force enumeration
of the
2**n enter/skip choices, a distribution built by convolving n fair coin flips, the binomial
moments written out, and the figures Veit et al. 2016 state for the 110-layer ResNet. No Keras:
the module must import without it."""

from __future__ import annotations

import itertools
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from cnnbook.nets import published
from cnnbook.resnet import unrolled


def enumerated_paths(num_blocks: int) -> list[tuple[int, ...]]:
    """Every enter (1) / skip (0) choice for every block, as the blocks entered, counted from 1."""
    return [tuple(block for block, entered in enumerate(choices, start=1) if entered)
            for choices in itertools.product((0, 1), repeat=num_blocks)]


def enumerated_length_counts(num_blocks: int) -> list[int]:
    """Path lengths by brute force: how many of the enumerated paths enter k blocks."""
    counts = [0] * (num_blocks + 1)
    for path in enumerated_paths(num_blocks):
        counts[len(path)] += 1
    return counts


def convolved_distribution(num_blocks: int) -> np.ndarray:
    """The length of a random path as a sum of n fair coin flips: convolve [1/2, 1/2] n times."""
    distribution = np.array([1.0])
    for _ in range(num_blocks):
        distribution = np.convolve(distribution, [0.5, 0.5])
    return distribution


@pytest.mark.parametrize("num_blocks", range(0, 11))
def test_paths_are_every_enter_or_skip_choice_and_lengths_are_binomial(num_blocks):
    paths = unrolled.unrolled_paths(num_blocks)
    assert sorted(paths) == sorted(enumerated_paths(num_blocks))
    assert unrolled.num_paths(num_blocks) == len(enumerated_paths(num_blocks))
    assert unrolled.path_length_counts(num_blocks) == enumerated_length_counts(num_blocks)
    assert [len(path) for path in paths] == sorted(len(path) for path in paths)  # shortest first


def test_three_blocks_unroll_into_the_eight_paths_of_the_figure():
    assert unrolled.unrolled_paths(3) == [
        (), (1,), (2,), (3,), (1, 2), (1, 3), (2, 3), (1, 2, 3)
    ]


@pytest.mark.parametrize("num_blocks", [1, 9, 27, 54, 200])
def test_path_length_distribution_is_binomial_half(num_blocks):
    distribution = unrolled.path_length_distribution(num_blocks)
    np.testing.assert_allclose(distribution, convolved_distribution(num_blocks), rtol=1e-12,
                               atol=1e-300)
    lengths = np.arange(num_blocks + 1)
    assert distribution.sum() == pytest.approx(1.0)
    assert (lengths * distribution).sum() == pytest.approx(num_blocks / 2)
    variance = ((lengths - num_blocks / 2) ** 2 * distribution).sum()
    assert variance == pytest.approx(num_blocks / 4)


@pytest.mark.parametrize("num_blocks", range(0, 9))
def test_path_length_mass_is_the_share_of_enumerated_paths_in_the_range(num_blocks):
    lengths = [len(path) for path in enumerated_paths(num_blocks)]
    for shortest in range(num_blocks + 1):
        for longest in range(shortest, num_blocks + 1):
            inside = sum(shortest <= length <= longest for length in lengths)
            expected = float(Fraction(inside, len(lengths)))
            assert unrolled.path_length_mass(num_blocks, shortest, longest) == expected


@pytest.fixture(scope="module")
def veit():
    return published.load("veit2016_resnet110").set_index("quantity")["value"]


def test_veit_95_percent_of_resnet110_paths_are_19_to_35_blocks_long(veit):
    num_blocks = int(veit["residual_blocks"])
    shortest_95 = int(veit["paths_95_percent_shortest"])
    longest_95 = int(veit["paths_95_percent_longest"])
    convolved = convolved_distribution(num_blocks)
    mass = unrolled.path_length_mass(num_blocks, shortest_95, longest_95)
    assert mass == pytest.approx(convolved[shortest_95 : longest_95 + 1].sum(), rel=1e-12)
    assert mass >= 0.95  # the paper's statement holds ...
    # ... and is generous, as the page says: the narrowest centred range holding 95% is inside.
    shortest, longest = unrolled.central_path_lengths(num_blocks, 0.95)
    assert convolved[shortest : longest + 1].sum() >= 0.95
    assert convolved[shortest + 1 : longest].sum() < 0.95
    assert shortest_95 < shortest and longest < longest_95
    # and the paper's range is wider than +-1.96 standard deviations
    assert (longest_95 - num_blocks / 2) / (np.sqrt(num_blocks) / 2) > 1.96


def test_veit_effective_paths_are_the_published_share_of_all(veit):
    # Veit et al.: most gradient comes from paths 5 to 17 blocks long, 0.45% of all paths.
    share = unrolled.path_length_mass(int(veit["residual_blocks"]),
                                      int(veit["effective_paths_shortest"]),
                                      int(veit["effective_paths_longest"]))
    assert round(100 * share, 2) == veit["effective_paths_percent_of_all"]


@pytest.mark.parametrize("num_blocks, mass", [(0, 1.0), (1, 0.5), (8, 0.99), (27, 0.95),
                                              (54, 0.5), (7, 1.0)])
def test_central_interval_is_the_narrowest_centred_one(num_blocks, mass):
    distribution = convolved_distribution(num_blocks)
    shortest, longest = unrolled.central_path_lengths(num_blocks, mass)
    assert shortest + longest == num_blocks
    assert distribution[shortest : longest + 1].sum() >= mass - 1e-12
    if longest - shortest >= 2:
        assert distribution[shortest + 1 : longest].sum() < mass


@pytest.mark.parametrize(
    "call",
    [
        lambda: unrolled.num_paths(-1),
        lambda: unrolled.num_paths(2.5),
        lambda: unrolled.path_length_counts(True),
        lambda: unrolled.unrolled_paths(17),
        lambda: unrolled.path_length_mass(10, 5, 4),
        lambda: unrolled.path_length_mass(10, 0, 11),
        lambda: unrolled.central_path_lengths(10, 1.5),
        lambda: unrolled.central_path_lengths(10, 0),
        lambda: unrolled.central_path_lengths(10, "0.9"),
    ],
)
def test_bad_path_arguments_raise_value_error(call):
    with pytest.raises(ValueError, match="must be"):
        call()


def test_the_module_imports_without_keras_or_tensorflow(repo_root):
    """The path mathematics is pure arithmetic: importing it (and the package) in a fresh
    interpreter must not load a deep-learning framework."""
    probe = ("import sys, cnnbook.resnet.unrolled\n"
             "print(sorted(name for name in sys.modules\n"
             "             if name.split('.')[0] in ('keras', 'tensorflow', 'jax', 'torch')))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=repo_root, capture_output=True,
                            text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]", result.stdout
