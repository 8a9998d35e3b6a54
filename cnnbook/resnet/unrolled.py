"""The unrolled view of a residual network: how many paths, and how long they are.

Chapter "Residual networks" (``book/resnet.md``), after Veit, Wilber and Belongie 2016,
*Residual Networks Behave Like Ensembles of Relatively Shallow Networks* (arXiv 1605.06431),
section 3.

A chain of ``n`` residual blocks ``y_i = f_i(y_{i-1}) + y_{i-1}`` expands, block by block, into a
sum over every way of either entering or skipping each block: ``2**n`` paths from input to output.
A path that enters ``k`` of the ``n`` blocks can choose them in ``C(n, k)`` ways, so the path
lengths follow the binomial distribution ``Binomial(n, 1/2)``::

    P(length = k) = C(n, k) / 2**n,      k = 0, 1, ..., n

with mean ``n/2`` and standard deviation ``sqrt(n)/2``.

Pure arithmetic on counts (exact integers, rounded once where a share is returned): no Keras or
TensorFlow, so the page's tables and the exercises can use it without building a network. The
lesion studies on real networks, which delete and reorder blocks, live in
:mod:`cnnbook.resnet.lesion`.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

import numpy as np

from cnnbook.checks import check_int

__all__ = [
    "num_paths",
    "path_length_counts",
    "path_length_distribution",
    "path_length_mass",
    "central_path_lengths",
    "unrolled_paths",
]

MAX_ENUMERATED_BLOCKS = 16
""":func:`unrolled_paths` lists at most ``2**16`` paths; the counts work for any ``n``."""


def num_paths(num_blocks: int) -> int:
    """Paths from input to output through ``n = num_blocks`` residual blocks: ``2**n`` (each
    block is either entered or skipped)."""
    num_blocks = check_int("num_blocks", num_blocks, 0)
    return 2**num_blocks


def path_length_counts(num_blocks: int) -> list[int]:
    """``[C(n, 0), C(n, 1), ..., C(n, n)]``: how many of the ``2**n`` paths enter exactly ``k``
    blocks (exact integers; they sum to :func:`num_paths`)."""
    num_blocks = check_int("num_blocks", num_blocks, 0)
    return [math.comb(num_blocks, length) for length in range(num_blocks + 1)]


def path_length_distribution(num_blocks: int) -> np.ndarray:
    """``P(length = k) = C(n, k) / 2**n`` for ``k = 0..n``: the share of paths that enter exactly
    ``k`` blocks, the probability mass function of ``Binomial(n, 1/2)`` (float64 array; each
    share is the exact fraction rounded once)."""
    total = num_paths(num_blocks)
    return np.array([float(Fraction(count, total)) for count in path_length_counts(num_blocks)])


def path_length_mass(num_blocks: int, shortest: int, longest: int) -> float:
    """Share of the ``2**n`` paths whose length ``k`` lies in ``shortest <= k <= longest``:
    ``sum_k C(n, k) / 2**n``, summed exactly with integers and rounded once."""
    num_blocks = check_int("num_blocks", num_blocks, 0)
    shortest = check_int("shortest", shortest, 0, num_blocks)
    longest = check_int("longest", longest, shortest, num_blocks)
    counts = path_length_counts(num_blocks)
    return float(Fraction(sum(counts[shortest : longest + 1]), num_paths(num_blocks)))


def central_path_lengths(num_blocks: int, mass: float = 0.95) -> tuple[int, int]:
    """The narrowest interval ``(shortest, longest)`` centred on the mean ``n/2`` that holds at
    least ``mass`` of the paths. For even ``n`` it is ``(n/2 - r, n/2 + r)``, for odd ``n``
    ``((n-1)/2 - r, (n+1)/2 + r)``, with the smallest ``r >= 0`` whose
    :func:`path_length_mass` reaches ``mass`` (``0 < mass <= 1``)."""
    num_blocks = check_int("num_blocks", num_blocks, 0)
    if isinstance(mass, bool) or not isinstance(mass, numbers.Real) or not 0 < mass <= 1:
        raise ValueError(f"mass must be a number in (0, 1], got {mass!r}")
    low, high = num_blocks // 2, (num_blocks + 1) // 2
    while path_length_mass(num_blocks, low, high) < mass:
        low, high = low - 1, high + 1
    return low, high


def unrolled_paths(num_blocks: int) -> list[tuple[int, ...]]:
    """Every path of the unrolled view, as the tuple of the blocks (counted from 1) that it
    enters, shortest first, then in lexicographic order: for 3 blocks ``[(), (1,), (2,), (3,),
    (1, 2), (1, 3), (2, 3), (1, 2, 3)]``. Only for small ``n`` (at most
    :data:`MAX_ENUMERATED_BLOCKS`): there are ``2**n`` of them."""
    num_blocks = check_int("num_blocks", num_blocks, 0, MAX_ENUMERATED_BLOCKS)
    paths = [
        tuple(block + 1 for block in range(num_blocks) if mask >> block & 1)
        for mask in range(num_paths(num_blocks))
    ]
    return sorted(paths, key=lambda path: (len(path), path))
