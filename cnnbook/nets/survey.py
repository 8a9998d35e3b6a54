"""The survey of known ConvNets: which networks the chapter builds, their computed costs next to
the published figures, and their measured speed.

Chapter "Known ConvNet architectures" (``book/architectures.md``) builds one network per family
at the image size its published accuracy refers to (``keras.applications`` with
``weights=None``, plus LeNet-5 and AlexNet from :mod:`cnnbook.nets.models`), counts its parameters
and
multiply-accumulates with :mod:`cnnbook.counting.accounting`, and sets them beside the published
numbers
of ``published_data/imagenet_models.csv`` and the years of ``published_data/architectures.csv``.
``tests/test_architectures.py`` asserts every computed number against those files.

(This module was ``cnnbook.nets.survey``, which still imports it under the old name.)
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cnnbook.checks import check_positive_real
from cnnbook.counting import speed
from cnnbook.nets import published

__all__ = [
    "SurveyModel",
    "SURVEY_MODELS",
    "SPEED_MODELS",
    "survey_model",
    "build_survey_model",
    "architecture_years",
    "published_models",
    "computed_costs",
    "survey_table",
    "measure_speeds",
    "models_reaching",
]


@dataclass(frozen=True)
class SurveyModel:
    """One network the chapter builds.

    ``name`` is the row of ``imagenet_models.csv`` it is compared with (or a label when there is
    none); ``builder`` is a ``cnnbook.nets.models`` function or the name of a ``keras.applications``
    constructor; ``builder_arguments`` go to it; ``same_as_published`` says whether the built
    network is the one the published figures describe (``False`` for AlexNet: the published row
    is torchvision's variant, see :func:`cnnbook.nets.models.alexnet`).
    """

    name: str
    builder: str | Callable
    architecture: str
    builder_arguments: dict = field(default_factory=dict)
    same_as_published: bool = True


def _lenet5():
    # cnnbook.nets.models imports Keras (seconds): the survey's list and its published tables
    # are read without it, so only a network's builder imports it
    from cnnbook.nets import models

    return models.lenet5()


def _alexnet():
    from cnnbook.nets import models  # imports Keras: only when built (see _lenet5)

    return models.alexnet()


SURVEY_MODELS: tuple[SurveyModel, ...] = (
    SurveyModel("LeNet-5", _lenet5, "LeNet-5"),
    SurveyModel("AlexNet", _alexnet, "AlexNet", same_as_published=False),
    SurveyModel("VGG16", "VGG16", "VGG"),
    SurveyModel("InceptionV3", "InceptionV3", "Inception v3"),
    SurveyModel("ResNet50", "ResNet50", "ResNet"),
    SurveyModel("DenseNet121", "DenseNet121", "DenseNet"),
    SurveyModel("Xception", "Xception", "Xception"),
    SurveyModel("MobileNet", "MobileNet", "MobileNet"),
    SurveyModel("MobileNetV2", "MobileNetV2", "MobileNetV2"),
    SurveyModel("MobileNetV3-Large", "MobileNetV3Large", "MobileNetV3",
                {"input_shape": (224, 224, 3)}),
    SurveyModel("EfficientNetB0", "EfficientNetB0", "EfficientNet"),
    SurveyModel("EfficientNetB7", "EfficientNetB7", "EfficientNet"),
    SurveyModel("ConvNeXt-T", "ConvNeXtTiny", "ConvNeXt"),
)
"""The networks the chapter builds, in the order of its table: one per family, at the size of
the published accuracy (EfficientNet twice, to show compound scaling)."""

SPEED_MODELS: tuple[str, ...] = (
    "MobileNetV2", "EfficientNetB0", "ResNet50", "VGG16", "ConvNeXt-T",
)
"""The networks the chapter times: a small, an efficient, a residual, a plain and a modern one."""


def survey_model(name: str) -> SurveyModel:
    """The :class:`SurveyModel` called ``name``, or ``ValueError`` listing the names."""
    for model in SURVEY_MODELS:
        if model.name == name:
            return model
    raise ValueError(
        f"no survey model {name!r}; choose one of {', '.join(m.name for m in SURVEY_MODELS)}"
    )


def build_survey_model(name: str):
    """Build the network ``name`` with fresh, untrained weights (``weights=None``)."""
    import keras  # slow to import: only when a network is built (see _lenet5)

    entry = survey_model(name)
    if callable(entry.builder):
        return entry.builder(**entry.builder_arguments)
    constructor = getattr(keras.applications, entry.builder)
    return constructor(weights=None, **entry.builder_arguments)


def architecture_years():
    """``architectures.csv`` (architecture, year, idea, problem, models, source) as a DataFrame."""
    return published.load("architectures")


def published_models():
    """``imagenet_models.csv`` with the ``architecture`` and ``year`` of each row (from the
    ``models`` column of ``architectures.csv``); ``ValueError`` if a row has no architecture."""
    table = published.load("imagenet_models")
    owner = {}
    for row in architecture_years().itertuples():
        if isinstance(row.models, str):
            for model in row.models.split(";"):
                owner[model.strip()] = (row.architecture, row.year)
    missing = sorted(set(table["model"]) - set(owner))
    if missing:
        raise ValueError(
            f"imagenet_models.csv rows {missing} belong to no architecture: add them to the "
            "models column of architectures.csv"
        )
    table["architecture"] = [owner[model][0] for model in table["model"]]
    table["year"] = [owner[model][1] for model in table["model"]]
    return table


def computed_costs(names: Iterable[str] | None = None):
    """Build each network (default: all of :data:`SURVEY_MODELS`) and count it with
    :mod:`cnnbook.counting.accounting`, freeing it (``keras.backend.clear_session()``) before the
    next.

    Columns: ``model``, ``architecture``, ``input_shape`` (height, width, channels),
    ``params`` (all weights, as ``model.count_params()``), ``trainable_params``, ``macs`` (one
    image's multiply-accumulates), ``same_as_published`` and ``layer_stats`` (the network's
    :func:`cnnbook.counting.accounting.layer_stats` table, for questions about single layers).

    ``names`` is a list of names of :data:`SURVEY_MODELS`; a single string or an unknown name
    raises ``ValueError`` before anything is built.
    """
    # Keras and pandas (and accounting, which imports Keras) are slow to import: only the
    # functions that build networks or tables import them, not the survey's list
    import keras
    import pandas as pd  # as above

    from cnnbook.counting import accounting  # imports Keras, as above

    if names is None:
        names = [m.name for m in SURVEY_MODELS]
    elif isinstance(names, str):
        raise ValueError(
            f"names must be a list of survey model names, e.g. [{names!r}], not the string "
            f"{names!r} (whose characters are not model names)"
        )
    names = list(names)
    for name in names:
        survey_model(name)  # every name is checked before the first (slow) build
    rows = []
    for name in names:
        entry = survey_model(name)
        model = build_survey_model(name)
        stats = accounting.layer_stats(model)
        rows.append({
            "model": name,
            "architecture": entry.architecture,
            "input_shape": tuple(int(size) for size in model.inputs[0].shape[1:]),
            "params": int(stats["params"].sum()),
            "trainable_params": int(stats["trainable_params"].sum()),
            "macs": int(stats["macs"].sum()),
            "same_as_published": entry.same_as_published,
            "layer_stats": stats,
        })
        del model, stats
        keras.backend.clear_session()
        gc.collect()
    return pd.DataFrame(rows)


def survey_table(costs):
    """The computed ``costs`` (from :func:`computed_costs`) beside the published figures:
    adds ``year``, ``params_millions``/``macs_g`` computed and ``published_params_millions``,
    ``published_macs_g``, ``published_macs_image_size``, ``top1_percent`` with their sources
    (``NaN`` where nothing is published, e.g. LeNet-5 on ImageNet)."""
    import pandas as pd  # slow to import: only the tables need it (see computed_costs)

    years = architecture_years().set_index("architecture")["year"]
    figures = published_models().set_index("model")
    table = costs.copy()
    table["year"] = [int(years[architecture]) for architecture in table["architecture"]]
    table["image_size"] = [shape[0] for shape in table["input_shape"]]
    table["params_millions"] = table["params"] / 1e6
    table["macs_g"] = table["macs"] / 1e9
    columns = {
        "params_millions": "published_params_millions",
        "params_source": "params_source",
        "macs_g": "published_macs_g",
        "macs_image_size": "published_macs_image_size",
        "macs_source": "macs_source",
        "top1_percent": "top1_percent",
        "top1_source": "top1_source",
    }
    for source_column, column in columns.items():
        table[column] = [
            figures.loc[name, source_column] if name in figures.index else pd.NA
            for name in table["model"]
        ]
    return table


def measure_speeds(
    names: Sequence[str] = SPEED_MODELS,
    batch_sizes: Sequence[int] = (1, 32),
    warmup: int = 1,
    iterations: int = 5,
    time_budget_s: float | None = 3.0,
):
    """Images per second of each network at each batch size on this machine
    (:func:`cnnbook.counting.speed.measure_throughput` with ``warmup``, ``iterations`` and
    ``time_budget_s`` per network and batch size), one network in memory at a time.

    Columns: ``model``, ``batch_size``, ``images_per_second``, ``latency_ms`` (one batch, the
    median) and ``timed_calls`` (how many calls the median is over).
    """
    # slow to import: only when networks are built and timed (see computed_costs)
    import keras
    import pandas as pd  # as above

    rows = []
    for name in names:
        model = build_survey_model(name)
        for batch_size in batch_sizes:
            result = speed.measure_throughput(model, batch_size, warmup=warmup,
                                              iterations=iterations, time_budget_s=time_budget_s)
            rows.append({
                "model": name,
                "batch_size": batch_size,
                "images_per_second": result.images_per_second,
                "latency_ms": result.latency_ms,
                "timed_calls": len(result.batch_seconds),
            })
        del model
        keras.backend.clear_session()
        gc.collect()
    return pd.DataFrame(rows)


def models_reaching(speeds, frames_per_second: float = 20.0) -> list[str]:
    """The networks of ``speeds`` (from :func:`measure_speeds`) that process single images
    (batch size 1, as a camera delivers frames) at ``frames_per_second`` or more, fastest first.
    """
    frames_per_second = check_positive_real("frames_per_second", frames_per_second)
    single = speeds[speeds["batch_size"] == 1]
    if single.empty:
        raise ValueError("speeds has no batch_size == 1 rows: measure with batch_sizes=(1, ...)")
    fast = single[single["images_per_second"] >= frames_per_second]
    return list(fast.sort_values("images_per_second", ascending=False)["model"])
