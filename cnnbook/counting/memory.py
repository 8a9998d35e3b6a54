"""Memory of one training step: weights, gradients, optimizer state and activations, in bytes.

Chapter "Parameters, memory and compute" (``book/parameters.md``) derives the estimate; the
counts of weights and activations come from :mod:`cnnbook.counting.accounting`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from cnnbook.checks import check_int as _check_int
from cnnbook.counting.accounting import column_total, layer_rows

__all__ = ["TrainingMemory", "training_memory", "max_batch_size", "OPTIMIZER_SLOTS", "DTYPE_BYTES"]


OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2}
"""How many tensors of optimizer state each trainable weight has (SGD none, momentum one
velocity, Adam the first and second moment estimates)."""

DTYPE_BYTES = {"float32": 4, "mixed_float16": 2}
"""Bytes per stored activation under each Keras dtype policy."""

_VARIABLE_BYTES = 4  # Keras keeps variables, gradients and optimizer slots in float32


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes of one training step, in four parts; ``total`` is their sum."""

    weights: int
    gradients: int
    optimizer_state: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer_state + self.activations

    def as_dict(self) -> dict[str, int]:
        """The four parts by name (for a table or a stacked plot)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def training_memory(model, batch_size: int, optimizer: str = "sgd", dtype: str = "float32", *,
                    input_shape=None) -> TrainingMemory:
    """Memory of one training step of ``model`` on ``batch_size`` examples, in bytes.

    * ``weights = 4 * P`` for all ``P`` weights (Keras keeps variables in float32, also under
      ``mixed_float16``), plus ``2 * P_trainable`` under ``mixed_float16`` for the float16 copies
      of the weights that the forward pass makes and the backward pass reuses;
    * ``gradients = 4 * P_trainable`` (one float32 gradient per trainable weight);
    * ``optimizer_state = 4 * s * P_trainable`` with ``s`` slots per weight
      (:data:`OPTIMIZER_SLOTS`: ``sgd`` 0, ``momentum`` 1, ``adam`` 2);
    * ``activations = b * batch_size * A`` where ``A`` is
      :func:`~cnnbook.counting.accounting.activation_count` (every layer's output is kept for the
      backward
      pass) and ``b`` is 4 bytes (``float32``) or 2
      (``mixed_float16``).

    Assumptions: nothing is recomputed or freed early (no gradient checkpointing; a framework may
    free some tensors, e.g. a convolution's output when the ReLU after it keeps its own); the
    transient gradients of activations during the backward pass, the framework's workspaces
    (cuDNN), the CUDA context and allocator fragmentation are not counted. The estimate is linear
    in ``batch_size``; real peaks are higher by a model- and framework-dependent margin.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    if optimizer not in OPTIMIZER_SLOTS:
        raise ValueError(
            f"optimizer must be one of {sorted(OPTIMIZER_SLOTS)}, got {optimizer!r}"
        )
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_BYTES)}, got {dtype!r}")
    rows = layer_rows(model, input_shape)
    trainable = sum(row.trainable_params for row in rows)
    all_params = trainable + sum(row.non_trainable_params for row in rows)
    weight_copies = 2 * trainable if dtype == "mixed_float16" else 0
    activations = column_total(model, "activations", input_shape, rows)
    return TrainingMemory(
        weights=_VARIABLE_BYTES * all_params + weight_copies,
        gradients=_VARIABLE_BYTES * trainable,
        optimizer_state=_VARIABLE_BYTES * OPTIMIZER_SLOTS[optimizer] * trainable,
        activations=DTYPE_BYTES[dtype] * batch_size * activations,
    )


def max_batch_size(model, memory_bytes: int, optimizer: str = "sgd", dtype: str = "float32", *,
                   input_shape=None) -> int:
    """The largest batch whose :func:`training_memory` fits in ``memory_bytes``:
    ``floor((memory - weights - gradients - optimizer_state) / activations_per_example)``,
    0 when the fixed part alone does not fit."""
    memory_bytes = _check_int("memory_bytes", memory_bytes, 1)
    one_example = training_memory(model, 1, optimizer, dtype, input_shape=input_shape)
    fixed = one_example.total - one_example.activations
    return max(0, (memory_bytes - fixed) // one_example.activations)
