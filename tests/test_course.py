"""The graded course end to end, with the real nbgrader commands in a temporary copy of the course.

What an instructor does (solutions/README.md) is what these tests do: validate the sources,
regenerate the student versions and compare them with the committed exercises/, validate the
unanswered release, autograde reference, blank and partly correct submissions, grade the trained
ResNet-20 models with ``python -m cnnbook.grading accuracy``, generate feedback and export grades.
The fast tests at the top read the committed notebooks only.

Grading times are printed in the run's summary (``report_timing``), not asserted.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import shlex
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from nbgrader_course import (
    ASSIGNMENTS,
    GRADE_ID,
    NO_TEST_PASSED,
    PARTLY_CORRECT,
    VALIDATION_PASSED,
    WITHOUT_FEEDBACK_KERNEL,
    Course,
    accuracy_points,
    auto_points,
    course_environment,
    edit_cell,
    grade_cells,
    gradebook_scores,
    measured_accuracy,
    nbgrader_metadata,
    points_of,
    read_notebook,
    source_of,
    split_protected_lines,
    with_solutions_replaced,
    without_volatile_metadata,
)

from cnnbook.course.layers import CUSTOM_LAYERS, ZeroPadShortcut
from cnnbook.grading import evaluation, reference_networks, tiers, written_here
from cnnbook.grading.collect import read_observed_times
from cnnbook.nets import published
from cnnbook.nets.models import toy_cnn

QUICK_ASSIGNMENTS = ("sizing", "parameters")
RESNET_EPOCHS = "3"
"""Epochs the suite trains the reference ResNet-20 for (CNNBOOK_EPOCHS), on the 9,000 training
images of the subset's split: a real trained network to grade end to end, in about a minute
(one epoch left it at chance, two at 31% on the test images, below the lowest tier, which would
not tell a grader that gives 0 from a right one). Its points
are the tier its own accuracy reaches, measured here with Keras. The run that set the subset's
tiers trains longer (6 epochs): ``benchmarks/reference_tiers.py`` repeats it, in the background,
and :func:`test_reference_runs_reach_the_top_tier_their_source_quotes` checks its committed
record."""

REFERENCE_RUNS = Path(__file__).resolve().parents[1] / "results" / "reference_tiers"
"""The records of benchmarks/reference_tiers.py, one per graded model."""


def test_reference_runs_reach_the_top_tier_their_source_quotes(repo_root):
    """Each tier of the shared subset comes from a measured reference run: its committed record
    (benchmarks/reference_tiers.py) reaches the top tier, and the tier's source quotes its
    accuracy and epochs."""
    config = tiers.load_course_config(repo_root)
    entries = sorted(config.AccuracyGrader.assignments)
    assert entries == ["architectures-plain", "architectures-separable", "resnet"]
    for entry in entries:
        record = json.loads((REFERENCE_RUNS / f"{entry}.json").read_text())
        rule = tiers.accuracy_rule(config, entry, "cifar10-subset", repo_root)
        assert record["entry"] == entry and record["test_images"] == 10_000, record
        assert record["accuracy"] >= max(threshold for threshold, _ in rule.tiers), (entry, record)
        assert tiers.points_for(record["accuracy"], rule.tiers) == rule.max_points
        assert f"CNNBOOK_EPOCHS={record['epochs']}" in rule.tiers_source, rule.tiers_source
        assert f"{record['accuracy']:.2%}" in rule.tiers_source, (entry, rule.tiers_source)


def resnet_grading(test):
    """The marks of a test that takes :func:`resnet_grades` (it trains and grades a class): slow,
    run by `make test-grading` instead of `make test`, and one work unit with the others that
    take it (tests/conftest.py), apart from the module's sizing and parameters grading, handed
    out first."""
    for mark in (pytest.mark.slow, pytest.mark.grading_batch,
                 pytest.mark.xdist_group("test_course-resnet_grades"), pytest.mark.long_unit):
        test = mark(test)
    return test


# --- The committed notebooks ----------------------------------------------------------------------


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_sources_and_releases_are_committed_without_outputs(repo_root, assignment):
    for folder in ("solutions", "exercises"):
        notebook = read_notebook(repo_root / folder / assignment / f"{assignment}.ipynb")
        for cell in notebook["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, (
                    f"{folder}/{assignment}: cell {cell.get('id')} has stored output"
                )


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_graded_cell_has_points_and_a_meaningful_grade_id(repo_root, assignment):
    notebook = read_notebook(repo_root / "solutions" / assignment / f"{assignment}.ipynb")
    grade_ids = [nbgrader_metadata(cell)["grade_id"] for cell in notebook["cells"]
                 if nbgrader_metadata(cell)]
    assert len(grade_ids) == len(set(grade_ids)), "grade ids must be unique"
    assert all(GRADE_ID.match(grade_id) for grade_id in grade_ids), grade_ids
    graded = grade_cells(notebook)
    assert len(graded) >= 5
    for grade_id, cell in graded.items():
        assert float(nbgrader_metadata(cell)["points"]) > 0, f"{grade_id} is worth no points"
        if cell["cell_type"] == "code" and not nbgrader_metadata(cell).get("solution"):
            visible = source_of(cell).split("### BEGIN HIDDEN TESTS")[0]
            assert "assert" in visible or "raise AssertionError" in visible, (
                f"{grade_id}: a test cell shows at least one visible check"
            )
            assert "### BEGIN HIDDEN TESTS" in source_of(cell), f"{grade_id} has no hidden tests"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercises_hold_no_solution_line_and_no_hidden_test(repo_root, assignment):
    protected, _ = split_protected_lines(
        read_notebook(repo_root / "solutions" / assignment / f"{assignment}.ipynb"))
    # a line of a few characters (")", "else:") reveals nothing and may stand anywhere
    protected = {line for line in protected if len(line) >= 8}
    assert len(protected) > 20
    files = [path for path in (repo_root / "exercises").rglob("*") if path.is_file()]
    for path in files:
        text = path.read_text()
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in text, f"{path} holds {marker!r}"
        released_lines = set()
        if path.suffix == ".ipynb":
            for cell in read_notebook(path)["cells"]:
                released_lines.update(line.strip() for line in source_of(cell).splitlines())
        else:
            released_lines.update(line.strip() for line in text.splitlines())
        leaked = sorted(protected & released_lines)
        assert not leaked, f"{path} shows solution or hidden-test lines: {leaked[:5]}"


def test_accuracy_cell_of_resnet_matches_the_grader_settings(repo_root):
    config = tiers.load_course_config(repo_root)
    notebook = read_notebook(repo_root / "solutions" / "resnet" / "resnet.ipynb")
    for training_set in config.AccuracyGrader.assignments["resnet"]["tiers"]:
        rule = tiers.accuracy_rule(config, "resnet", training_set, repo_root,
                                   accept_unmeasured=True)
        cell = grade_cells(notebook)[rule.grade_id]
        assert nbgrader_metadata(cell).get("task"), "the accuracy cell is a manually graded task"
        assert points_of(notebook, rule.grade_id) == rule.max_points, training_set


CHAPTERS = {"sizing": ["sizing"], "parameters": ["sizing", "parameters"], "resnet": ["resnet"]}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_first_cell_links_the_book_chapter_by_title_and_path(repo_root, assignment):
    intro = source_of(read_notebook(
        repo_root / "solutions" / assignment / f"{assignment}.ipynb")["cells"][0])
    for chapter in CHAPTERS[assignment]:
        page = repo_root / "book" / f"{chapter}.md"
        title = next(line[2:].strip() for line in page.read_text().splitlines()
                     if line.startswith("# "))
        # the notebook sits in solutions/<id>/ or exercises/<id>/: two levels below the book
        assert f"[{title}](../../book/{chapter}.md)" in intro, (assignment, title)


# --- The grading helpers --------------------------------------------------------------------------


def _notebook_functions(code: str) -> dict:
    """Run ``code`` as a notebook would (module ``__main__``) and return its namespace."""
    namespace = {"__name__": "__main__"}
    exec(compile(code, "<notebook>", "exec"), namespace)
    return namespace


def test_check_written_here_accepts_own_code_and_rejects_cnnbook_and_forbidden_packages():
    cells = _notebook_functions(
        "import math, keras, cnnbook.counting.sizing\n"
        "from cnnbook.counting.sizing import conv_output_size as reference\n"
        "from cnnbook.course.inputs import image_input\n"
        "def own(w, k, s=1): return (w - k) // s + 1\n"
        "def calls_own(w, k): return [own(w, k) for _ in range(1)][0]\n"
        "def delegates(w, k): return reference(w, k)\n"
        "def through_module(w, k): return cnnbook.counting.sizing.conv_output_size(w, k)\n"
        "def helper(w, k): return reference(w, k)\n"
        "def through_helper(w, k): return helper(w, k)\n"
        "def in_lambda(w, k): return (lambda: reference(w, k))()\n"
        "def uses_keras(w, k): return keras.layers.Conv2D(1, k)\n"
        "def given_input(): return image_input()\n"
    )
    written_here.check_written_here(cells["own"], forbid=("keras",))
    written_here.check_written_here(cells["calls_own"], forbid=("keras",))
    written_here.check_written_here(cells["uses_keras"])
    written_here.check_written_here(cells["given_input"], may_use=("image_input",))
    for name in ("delegates", "through_module", "through_helper", "in_lambda", "given_input"):
        with pytest.raises(AssertionError, match="own code"):
            written_here.check_written_here(cells[name])
    with pytest.raises(AssertionError, match="keras"):
        written_here.check_written_here(cells["uses_keras"], forbid=("keras",))
    with pytest.raises(AssertionError, match="cnnbook.counting.sizing"):
        written_here.check_written_here(cells["reference"])
    with pytest.raises(ValueError, match="function"):
        written_here.check_written_here(42)


def test_points_for_gives_the_highest_tier_reached():
    checked = tiers.checked_tiers([[0.5, 3], [0.55, 4], [0.35, 1]], "test")
    assert checked == ((0.55, 4.0), (0.5, 3.0), (0.35, 1.0))
    assert [tiers.points_for(accuracy, checked) for accuracy in (0.9, 0.55, 0.54, 0.35, 0.1)] == [
        4, 4, 3, 1, 0]
    for bad in ([[1.5, 4]], [[0.5, -1]], [], [[0.9, 1], [0.5, 2]], [["high", 4]]):
        with pytest.raises(ValueError):
            tiers.checked_tiers(bad, "test")


def test_accuracy_rule_needs_a_named_training_set_and_measured_tiers(repo_root):
    config = tiers.load_course_config(repo_root)
    assert not config.AccuracyGrader.get("training_set"), "the course names no default set"
    with pytest.raises(ValueError, match="--training-set cifar10"):
        tiers.accuracy_rule(config, "resnet", root=repo_root)
    with pytest.raises(ValueError, match="never measured"):
        tiers.accuracy_rule(config, "resnet", "cifar10", repo_root)
    assert tiers.accuracy_rule(config, "resnet", "cifar10", repo_root,
                               accept_unmeasured=True).tiers_source is None
    subset = tiers.accuracy_rule(config, "resnet", "cifar10-subset", repo_root)
    assert "CNNBOOK_EPOCHS=6" in subset.tiers_source and "%" in subset.tiers_source
    assert subset.shipped_models == tuple(sorted(
        str(path.resolve()) for path in repo_root.glob("results/*/*.keras"))) != ()
    with pytest.raises(ValueError, match="training set 'imagenet'"):
        tiers.accuracy_rule(config, "resnet", "imagenet", repo_root)
    with pytest.raises(ValueError, match="no accuracy grading"):
        tiers.accuracy_rule(config, "sizing", "cifar10-subset", repo_root)


def _resnet_solution(repo_root) -> dict:
    """The source notebook's set-up, basic_block and build_resnet20, run as a notebook would."""
    notebook = read_notebook(repo_root / "solutions" / "resnet" / "resnet.ipynb")
    namespace = {"__name__": "__main__"}
    for cell in notebook["cells"]:
        if nbgrader_metadata(cell).get("grade_id") in ("resnet_setup", "basic_block",
                                                       "build_resnet20"):
            exec(compile(source_of(cell), "<resnet notebook>", "exec"), namespace)
    return namespace


def _randomised(model, seed=0):
    """``model`` with every weight drawn at random (batch-norm variances positive)."""
    random = np.random.default_rng(seed)
    model.set_weights([random.uniform(0.5, 1.5, weight.shape).astype("float32")
                       if "variance" in weight.path else
                       random.normal(0, 0.1, weight.shape).astype("float32")
                       for weight in model.weights])
    return model


RESNET20_TRAINABLE = (
    9 * 3 * 16  # stem
    + 6 * 9 * 16 * 16 + (9 * 16 * 32 + 5 * 9 * 32 * 32) + (9 * 32 * 64 + 5 * 9 * 64 * 64)
    + 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64)  # gamma and beta of 19 batch norms
    + 64 * 10 + 10  # logits
)
"""Trainable parameters of ResNet-20 with option A, summed by hand from He et al.'s table 6
design (269,722: the paper's 0.27M)."""


def test_grader_rebuilds_the_papers_resnet20_with_the_notebooks_layer_names(repo_root):
    reference = reference_networks.reference_resnet20()
    # Keras' own count of the grader's network against the hand sum from the paper's design ...
    keras_trainable = sum(math.prod(weight.shape) for weight in reference.trainable_weights)
    assert keras_trainable == RESNET20_TRAINABLE
    # ... and both against the 0.27M He et al. print in table 6 (millions to two places)
    paper = published.load("he2015_cifar10").set_index("network")
    assert round(keras_trainable / 1e6, 2) == paper.loc["ResNet-20", "params_millions"] == 0.27
    assert sum(isinstance(layer, keras.layers.Add) for layer in reference.layers) == 9
    student = _resnet_solution(repo_root)["build_resnet20"]()
    assert [layer.name for layer in reference.layers] == [layer.name for layer in student.layers]


def test_grader_loads_the_submitted_weights_by_layer_name_into_its_own_network(repo_root):
    student = _randomised(_resnet_solution(repo_root)["build_resnet20"]())
    reference = reference_networks.reference_resnet20()
    assert evaluation.load_weights_by_name(reference, student) == []
    images = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(reference(images, training=False)),
                               np.asarray(student(images, training=False)), atol=1e-4)


def test_grader_names_the_layers_of_a_padded_or_altered_model(repo_root):
    build_resnet20 = _resnet_solution(repo_root)["build_resnet20"]
    resnet20 = build_resnet20()
    # the cheat of issue 11: frozen extra weights merged into the logits by a Maximum layer
    hidden = keras.layers.Dense(10, name="memory", trainable=False)(
        keras.layers.Flatten()(resnet20.get_layer("normalize").output))
    padded = keras.Model(resnet20.input,
                         keras.layers.Maximum(name="merge")([resnet20.output, hidden]))
    problems = evaluation.load_weights_by_name(reference_networks.reference_resnet20(), padded)
    assert problems == [f"it has weights the network asked for does not have "
                        f"({32 * 32 * 3 * 10 + 10:,} values in memory)"]
    option_b = evaluation.load_weights_by_name(reference_networks.reference_resnet20(),
                                          build_resnet20("B"))
    assert option_b == ["it has weights the network asked for does not have (2,944 values in "
                        "stage2_block1_shortcut_conv, stage2_block1_shortcut_bn, "
                        "stage3_block1_shortcut_conv, stage3_block1_shortcut_bn)"]
    lesioned = evaluation.load_weights_by_name(reference_networks.reference_resnet20(),
                                          build_resnet20(deleted_blocks=("stage1_block2",)))
    assert lesioned == ["it has no layer with weights named stage1_block2_conv1, "
                        "stage1_block2_bn1, stage1_block2_conv2, stage1_block2_bn2"]
    wrong = evaluation.load_weights_by_name(reference_networks.reference_resnet20(), toy_cnn())
    assert wrong[0].startswith("it has no layer with weights named stem_conv, stem_bn")


def shipped_20_layer_model(root):
    """The smallest 20-layer network the course ships (``results/*/*20.keras``)."""
    return min(root.glob("results/*/*20.keras"), key=lambda path: path.stat().st_size)


def _shipped_kernels_in(model, shipped_path):
    """``model`` whose kernels are taken from the shipped file, each the next unused stored
    array of the same shape (what a student who renames the book's network would do)."""
    stored = [array for array in evaluation.keras_file_arrays(shipped_path) if array.size >= 256]
    for weight in model.weights:
        if math.prod(weight.shape) >= 256:
            match = next(index for index, array in enumerate(stored)
                         if array.shape == tuple(weight.shape))
            weight.assign(stored.pop(match))
    return model


def test_grader_refuses_a_shipped_model_renamed_or_perturbed(repo_root):
    shipped = shipped_20_layer_model(repo_root)
    build_resnet20 = _resnet_solution(repo_root)["build_resnet20"]
    renamed = _shipped_kernels_in(build_resnet20(), shipped)
    arrays = [weight.numpy() for weight in renamed.weights]
    verdict = evaluation.copied_from_shipped(arrays, [str(shipped)])
    assert verdict.startswith(f"20 of its 20 weight arrays are those of {shipped.name}"), verdict
    random = np.random.default_rng(2)
    perturbed = [array + random.normal(0, 0.3 * array.std(), array.shape) for array in arrays]
    assert shipped.name in evaluation.copied_from_shipped(perturbed, [str(shipped)])
    fresh = [weight.numpy() for weight in build_resnet20().weights]
    assert evaluation.copied_from_shipped(fresh, [str(shipped)]) is None
    assert evaluation.copied_from_shipped(arrays, []) is None


def _reparametrised_copy(model, seed=7):
    """A copy of ``model`` that computes the same function with other weights: inside every
    residual block the channels between the two convolutions are permuted and rescaled (each by
    its own positive factor), and the first batch norm's moving statistics compensate."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    random = np.random.default_rng(seed)
    for stage in (1, 2, 3):
        for block in (1, 2, 3):
            name = f"stage{stage}_block{block}"
            conv1, norm, conv2 = (copy.get_layer(f"{name}_{part}") for part in ("conv1", "bn1",
                                                                               "conv2"))
            kernel = conv1.kernel.numpy()
            order = random.permutation(kernel.shape[-1])
            scale = random.uniform(0.5, 2.0, kernel.shape[-1]).astype("float32")
            conv1.kernel.assign(kernel[..., order] * scale)
            gamma, beta, mean, variance = (weight.numpy() for weight in norm.weights)
            norm.set_weights([gamma[order], beta[order], mean[order] * scale,
                              variance[order] * scale**2])
            conv2.kernel.assign(conv2.kernel.numpy()[:, :, order, :])
    return copy


def test_copies_are_found_by_the_function_they_compute_not_by_their_weights():
    """A copy whose channels are permuted and rescaled (the batch norms compensating) holds
    weights that no longer match the original's, yet computes the same logits: the grader groups
    submissions by what they compute on probe images, and leaves independent networks apart."""
    models = {name: _randomised(reference_networks.reference_resnet20(), seed)
              for seed, name in enumerate(("ann", "ben", "cyd"))}
    models["dee"] = _reparametrised_copy(models["ben"])
    original = models["ben"].get_layer("stage2_block2_conv1").kernel.numpy().reshape(-1)
    permuted = models["dee"].get_layer("stage2_block2_conv1").kernel.numpy().reshape(-1)
    assert abs(np.corrcoef(original, permuted)[0, 1]) < 0.5, "the weights no longer match"
    probe = np.random.default_rng(5).uniform(0, 255, (evaluation.PROBE_IMAGES, 32, 32, 3)).astype(
        "float32")
    signatures = {name: evaluation.function_signature(model, probe)
                  for name, model in models.items()}
    assert all(len(signature) == 10 * evaluation.PROBE_IMAGES for signature in signatures.values())
    assert np.allclose(models["dee"](probe[:8], training=False),
                       models["ben"](probe[:8], training=False), atol=1e-3), "the same function"
    assert evaluation.copy_groups(signatures) == [["ben", "dee"]]
    signatures["eve"] = signatures["dee"]
    assert evaluation.copy_groups(signatures) == [["ben", "dee", "eve"]]


def test_a_network_better_on_test_than_on_validation_images_is_flagged():
    """The threshold is the margin plus three standard errors of the difference of two sampled
    accuracies, computed here from the binomial variance written out."""
    # 1,000 validation and 10,000 test images at 80%: standard error of the difference
    spread = (0.8 * 0.2 / 10_000 + 0.8 * 0.2 / 1_000) ** 0.5
    limit = evaluation.GENERALISATION_MARGIN + 3 * spread
    assert not evaluation.seen_test_images(0.80, 10_000, 0.80, 1_000)
    assert not evaluation.seen_test_images(0.80 + limit - 0.002, 10_000, 0.80, 1_000)
    assert evaluation.seen_test_images(0.80 + limit + 0.002, 10_000, 0.80, 1_000)
    assert evaluation.seen_test_images(0.99, 10_000, 0.81, 1_000)  # trained on the test images
    assert not evaluation.seen_test_images(0.70, 10_000, 0.80, 1_000)  # worse on test: no flag


def test_every_custom_layer_loads_through_the_grader_with_safe_mode(repo_root, tmp_path):
    paths = []
    for layer_class in CUSTOM_LAYERS:
        assert layer_class.__module__ == "cnnbook.course.layers", "one home for custom layers"
        images = keras.Input(shape=(32, 32, 3))
        features = keras.layers.Conv2D(8, 3, name="features")(images)
        custom = layer_class(16) if layer_class is ZeroPadShortcut else layer_class()
        logits = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(custom(features)))
        paths.append(tmp_path / f"{layer_class.__name__}.keras")
        keras.Model(images, logits).save(paths[-1])
    # the grader's evaluation in a fresh Python that imports nothing of the test's: each file
    # loads (safe_mode=True) and is then measured against the ResNet-20, which it is not
    evaluate_each = ("import json, sys; from cnnbook.grading import evaluation; print(json.dumps("
                     "[evaluation.evaluate_model(path, 'resnet20') for path in sys.argv[1:]]))")
    result = subprocess.run([sys.executable, "-c", evaluate_each, *map(str, paths)],
                            capture_output=True, text=True, timeout=300, cwd=repo_root,
                            env=course_environment(repo_root))
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    for path, outcome in zip(paths, outcomes, strict=True):
        assert outcome["ok"] is False
        assert outcome["reason"].startswith(f"{path.name} is not the resnet20 asked for: it has "
                                            "no layer with weights named stem_conv"), outcome


# --- The course, graded with nbgrader -------------------------------------------------------------


@pytest.fixture(scope="module")
def course(repo_root, cifar_subset_dir, tmp_path_factory):
    environment = course_environment(repo_root, CNNBOOK_DATA=str(cifar_subset_dir),
                                     CNNBOOK_EPOCHS=RESNET_EPOCHS)
    return Course.copy_of(repo_root, tmp_path_factory.mktemp("course"), environment)


@pytest.fixture(scope="module")
def released(course, report_timing):
    """The release regenerated in the temporary course with ``python -m
    cnnbook.grading.release``."""
    output, seconds = course.python("-m", "cnnbook.grading.release")
    report_timing("python -m cnnbook.grading.release (three assignments)", seconds)
    return output


@pytest.mark.slow
@pytest.mark.parametrize("assignment", QUICK_ASSIGNMENTS)
def test_source_passes_nbgrader_validate(course, assignment, report_timing):
    output, seconds = course.nbgrader("validate", str(course.source(assignment)))
    report_timing(f"nbgrader validate solutions/{assignment}", seconds)
    assert VALIDATION_PASSED in output, output[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_generated_release_is_the_committed_one(course, released, repo_root, assignment):
    assert f"released {assignment}" in released
    generated = read_notebook(course.release(assignment))
    committed = read_notebook(repo_root / "exercises" / assignment / f"{assignment}.ipynb")
    assert without_volatile_metadata(generated) == without_volatile_metadata(committed), (
        f"exercises/{assignment} is stale: run `python -m cnnbook.grading.release {assignment}` "
        "and commit"
    )
    assert sorted(path.name for path in course.release(assignment).parent.iterdir()) == [
        f"{assignment}.ipynb"]


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_unanswered_release_passes_no_test(course, released, assignment):
    output, _ = course.nbgrader("validate", "--invert", str(course.release(assignment)))
    assert NO_TEST_PASSED in output, output[-3000:]


def _parameters_solution(repo_root) -> dict:
    notebook = read_notebook(repo_root / "solutions" / "parameters" / "parameters.ipynb")
    namespace = {"__name__": "__main__"}
    for cell in notebook["cells"]:
        if nbgrader_metadata(cell).get("grade_id") in (
                "parameters_setup", "parameter_rules", "vgg16_layer_list", "vgg16_table"):
            exec(compile(source_of(cell), "<parameters notebook>", "exec"), namespace)
    return namespace


def constant_answers(repo_root, assignment: str) -> dict[str, str]:
    """A submission of constants copied from the book: every number the book prints for the
    assignment typed in, and every function a lookup table of the visible examples (regions of
    an answer cell separated by ``#---``, see ``with_solutions_replaced``)."""
    if assignment == "sizing":
        return {
            "output_size": """
known = {(32, 3, 1, "valid"): 30, (227, 11, 4, "valid"): 55, (7, 2, 2, "valid"): 3,
         (32, 3, 1, "same"): 32, (32, 3, 2, "same"): 16, (32, 5, 1, 2): 32}
if (input_size, kernel_size, stride, padding) not in known:
    raise ValueError("not one of the book's examples")
return known[(input_size, kernel_size, stride, padding)]""",
            "toy_shapes": """return {"input": (32, 32, 3), "conv": (32, 32, 12),
        "relu": (32, 32, 12),
        "pool": (16, 16, 12), "flatten": (3072,), "fc": (10,)}""",
            "alexnet_answers": """
return {"output_shape": (55, 55, 96), "exact": 54.25, "keras_size": 54, "unused_rows": 1}
#---
alexnet_conv1_shape = (55, 55, 96)
alexnet_224_exact = 54.25
alexnet_224_keras_size = 54
alexnet_224_unused_rows = 1""",
        }
    if assignment == "parameters":
        book = _parameters_solution(repo_root)
        totals = book["network_totals"](book["VGG16_LAYERS"], (224, 224, 3))
        return {
            "parameter_rules": """
table = {(3, 3, 64, True): 1792, (1, 16, 32, False): 512}
return table[(kernel_size, in_channels, filters, use_bias)]
#---
return {(25088, 4096): 102_764_544}[(in_features, units)]
#---
return {16: 64}[channels]""",
            "activation_memory": "return {(224, 224, 64): 12_845_056}[tuple(shape)]",
            "vgg16_table": f"""
return {book["layer_table"](book["VGG16_LAYERS"], (224, 224, 3))!r}
#---
return {totals!r}
#---
vgg16_total_params = {totals["params"]}
vgg16_total_activations = {totals["activations"]}
vgg16_activation_mib = {totals["mib"]!r}""",
            "block_macs": """
return 115_605_504
#---
return 231_211_008
#---
return 218_365_952
#---
basic_64_macs = 231_211_008
bottleneck_256_macs = 218_365_952
basic_256_macs = 3_699_376_128""",
        }
    studies = json.loads((repo_root / "results" / "resnet" / "lesion.json").read_text())
    lesion = next(study for name, study in studies.items() if not name.startswith("plain"))
    drops = [lesion["baseline"] - row["accuracy"] for row in lesion["single_block"][:9]]
    return {"lesion_study": f"""
raise NotImplementedError()
#---
baseline_accuracy = {lesion["baseline"]!r}
lesion_drops = dict(zip(BLOCK_NAMES, {drops!r}))"""}


CONSTANTS_SCORE = {"sizing": 0, "parameters": 0, "resnet": 0}
"""The most a submission of the book's constants may score, in points of autograded tests (and,
for resnet, of accuracy): a constant passes visible examples only, never the hidden variants."""


LATE_ASSIGNMENT = "sizing"
"""The assignment graded with a due date (issue 26.2): ``reference`` submits on time,
``partial`` 2 days 3 hours late (3 started days: 30% off), and ``extended`` (the reference
notebook) goes through a real exchange and ``nbgrader collect`` 2 days 5 hours after the due
date, claiming in its ``timestamp.txt`` to be a day early, with a 2-day extension: 5 hours late as
the exchange saw it, one started day, 10% off."""
LATE_SHARES = {"reference": 0.0, "partial": 0.3, "extended": 0.1}


def _nbgrader_time(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def _submit_with_due_date(course: Course, source: dict, tmp_folder: Path) -> None:
    """Set a due date for :data:`LATE_ASSIGNMENT` that makes the submissions of
    :data:`LATE_ASSIGNMENT`'s docstring on time, late and late with an extension."""
    due = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2, hours=5)
    course.nbgrader("db", "assignment", "add", LATE_ASSIGNMENT, f"--duedate={_nbgrader_time(due)}")
    for student, offset in (("reference", datetime.timedelta(hours=-1)),
                            ("partial", datetime.timedelta(days=2, hours=3))):
        folder = course.root / "submitted" / student / LATE_ASSIGNMENT
        (folder / "timestamp.txt").write_text(_nbgrader_time(due + offset))
    exchange = tmp_folder / "exchange"
    inbound = exchange / "cnnbook" / "inbound" / (
        f"extended+{LATE_ASSIGNMENT}+{_nbgrader_time(due)}+0a1b2c")
    inbound.mkdir(parents=True)
    (inbound / f"{LATE_ASSIGNMENT}.ipynb").write_text(json.dumps(source, indent=1))
    (inbound / "timestamp.txt").write_text(_nbgrader_time(due - datetime.timedelta(days=1)))
    course.nbgrader("collect", LATE_ASSIGNMENT, f"--Exchange.root={exchange}")
    course.nbgrader("db", "student", "add", "extended")
    course.python("-m", "cnnbook.grading", "extend", LATE_ASSIGNMENT, "extended", "--days", "2")


@pytest.fixture(scope="module")
def quick_grades(course, released, report_timing, repo_root, tmp_path_factory):
    """Reference, blank, partly correct and constants submissions of sizing and parameters,
    autograded in one command per assignment (timed, without the feedback kernel), with feedback
    generated and grades exported; sizing with a due date (:data:`LATE_ASSIGNMENT`)."""
    scores = {}
    for assignment in QUICK_ASSIGNMENTS:
        source = read_notebook(course.source(assignment))
        cell, old, new, _ = PARTLY_CORRECT[assignment]
        course.submit("reference", assignment, source)
        course.submit("blank", assignment, course.release(assignment))
        course.submit("partial", assignment, edit_cell(source, cell, old, new))
        course.submit("constants", assignment, with_solutions_replaced(
            read_notebook(course.release(assignment)), constant_answers(repo_root, assignment)))
        if assignment == LATE_ASSIGNMENT:
            _submit_with_due_date(course, source, tmp_path_factory.mktemp("late"))
        _, seconds = course.nbgrader("autograde", assignment, WITHOUT_FEEDBACK_KERNEL)
        report_timing(f"nbgrader autograde {assignment}, 4 submissions in one command (no "
                      "feedback kernel)", seconds)
        course.nbgrader("generate_feedback", assignment)
        scores[assignment] = gradebook_scores(course.root, assignment)
    return scores


@pytest.mark.slow
@pytest.mark.parametrize("assignment", QUICK_ASSIGNMENTS)
def test_reference_answers_get_full_marks(course, quick_grades, assignment):
    source = read_notebook(course.source(assignment))
    reference = quick_grades[assignment]["reference"]
    assert reference["code_score"] == reference["max_code_score"] == auto_points(source)
    for grade_id, cell in grade_cells(source).items():
        score, auto_score, _, needs_manual = reference["grades"][grade_id]
        if cell["cell_type"] == "markdown":  # the written answer waits for a human
            assert needs_manual and auto_score is None, grade_id
        else:
            assert score == points_of(source, grade_id), grade_id


@pytest.mark.slow
@pytest.mark.parametrize("assignment", QUICK_ASSIGNMENTS)
def test_blank_release_gets_zero(quick_grades, assignment):
    blank = quick_grades[assignment]["blank"]
    assert blank["score"] == 0 and blank["code_score"] == 0
    assert all(score == 0 for score, *_ in blank["grades"].values())


@pytest.mark.slow
@pytest.mark.parametrize("assignment", QUICK_ASSIGNMENTS)
def test_constants_copied_from_the_book_score_no_more_than_stated(quick_grades, assignment):
    constants = quick_grades[assignment]["constants"]
    print(f"{assignment}: constants from the book score {constants['code_score']:g} of "
          f"{constants['max_code_score']:g}")
    assert constants["code_score"] <= CONSTANTS_SCORE[assignment], constants["grades"]


@pytest.mark.slow
@pytest.mark.parametrize("assignment", QUICK_ASSIGNMENTS)
def test_partly_correct_submission_gets_the_points_of_its_passing_cells(
    course, quick_grades, assignment
):
    source = read_notebook(course.source(assignment))
    *_, failing = PARTLY_CORRECT[assignment]
    partial = quick_grades[assignment]["partial"]
    assert partial["code_score"] == auto_points(source) - points_of(source, *failing)
    for grade_id in failing:
        assert partial["grades"][grade_id][0] == 0


@pytest.mark.slow
@pytest.mark.parametrize("assignment", QUICK_ASSIGNMENTS)
def test_feedback_html_shows_every_student_their_score(course, quick_grades, assignment):
    for student, result in quick_grades[assignment].items():
        page = course.root / "feedback" / student / assignment / f"{assignment}.html"
        assert page.is_file(), f"no feedback for {student}"
        html = page.read_text()
        shown = round(result["score"] - result["late_penalty"], 2)  # nbgrader shows the net
        assert f"{shown:g} / " in html or f"{shown} / " in html, student
        if result["late_penalty"]:
            # as nbgrader's template writes it (Jinja's round: a float, "-3.0")
            penalty = round(float(result["late_penalty"]), 2)
            assert f"Late submission penalty (Score: -{penalty})" in html, student


@pytest.mark.slow
def test_late_work_loses_the_policys_share(course, quick_grades):
    from nbgrader.api import Gradebook

    grades = quick_grades[LATE_ASSIGNMENT]
    with Gradebook(f"sqlite:///{course.root / 'gradebook.db'}", "cnnbook") as gradebook:
        penalties = {
            student: gradebook.find_submission(LATE_ASSIGNMENT, student).late_submission_penalty
            or 0.0  # nbgrader stores None for work on time
            for student in LATE_SHARES}
        extended = gradebook.find_submission(LATE_ASSIGNMENT, "extended")
        # its timestamp.txt claimed a day early, and the gradebook keeps that claim (formgrader
        # and the feedback key on it), but the penalty counts from when the exchange saw it
        assert extended.timestamp < extended.assignment.duedate
        assert extended.extension == datetime.timedelta(days=2)
        observed = read_observed_times(course.root, LATE_ASSIGNMENT)["extended"]
        assert observed.replace(tzinfo=None) > extended.assignment.duedate + datetime.timedelta(
            days=2)
    for student, share in LATE_SHARES.items():
        assert grades[student]["score"] > 0, student
        assert penalties[student] == pytest.approx(share * grades[student]["score"]), student
    assert grades["extended"]["score"] == grades["reference"]["score"]
    course.nbgrader("export", "--to", "late.csv")
    with open(course.root / "late.csv", newline="") as handle:
        exported = {row["student_id"]: row for row in csv.DictReader(handle)
                    if row["assignment"] == LATE_ASSIGNMENT}
    for student, share in LATE_SHARES.items():
        row = exported[student]
        assert float(row["score"]) == pytest.approx((1 - share) * float(row["raw_score"])), row


@pytest.mark.slow
def test_grades_export_has_one_row_per_student_and_assignment(course, quick_grades):
    course.nbgrader("export", "--to", "grades.csv")
    with open(course.root / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for assignment in QUICK_ASSIGNMENTS:
        students = [row["student_id"] for row in rows if row["assignment"] == assignment]
        assert len(students) == len(set(students)), "one row per student"
        assert {"blank", "constants", "partial", "reference"} <= set(students), rows
        for row in rows:
            if row["assignment"] != assignment:
                continue
            if row["student_id"] in quick_grades[assignment]:
                expected = quick_grades[assignment][row["student_id"]]["score"]
                assert math.isclose(float(row["raw_score"]), expected), row
            else:  # a student of the course who did not submit this assignment (other fixtures)
                assert float(row["raw_score"]) == 0, row


# --- The resnet assignment: training, autograding without retraining, accuracy grading ------------


def _wrong_model_file(path):
    """A valid .keras file that is not a ResNet-20: the book's toy network."""
    toy_cnn().save(path)
    return path


def _unsafe_model_file(path):
    """A ResNet-sized model that hides code in a Lambda layer, which safe_mode refuses to load."""
    images = keras.Input(shape=(32, 32, 3))
    scaled = keras.layers.Lambda(lambda x: x / 255)(images)
    scores = keras.layers.Dense(10)(keras.layers.Flatten()(scaled))
    keras.Model(images, scores).save(path)
    return path


def _padded_model_file(path, trained_path):
    """The trained reference with 6.3 M frozen extra weights merged into its logits by a
    Maximum layer: the cheat that passed the old architecture check."""
    trained = keras.saving.load_model(trained_path, safe_mode=True, compile=False)
    flat = keras.layers.Flatten()(trained.get_layer("normalize").output)
    memory = keras.layers.Dense(2048, trainable=False, name="memory")(flat)
    memory = keras.layers.Dense(10, trainable=False, name="memory_logits")(memory)
    keras.Model(trained.input, keras.layers.Maximum()([trained.output, memory])).save(path)
    return path


RESNET_STUDENTS = ("reference", "twin", "permuted", "seen", "no_model", "blank", "constants",
                   "corrupt", "wrong", "unsafe", "padded", "shipped")


@pytest.fixture(scope="module")
def resnet_grades(course, released, tmp_path_factory, report_timing, repo_root, cifar_subset_dir):
    """Train the reference through ``nbgrader validate`` of the source, autograde it and the
    incomplete submissions, grade the accuracy of every submitted model, grade one copy again on
    a private image set labelled with the network's own answers, generate feedback."""
    output, seconds = course.nbgrader("validate", str(course.source("resnet")))
    report_timing(f"nbgrader validate solutions/resnet (trains ResNet-20, {RESNET_EPOCHS} epochs "
                  "on the 9,000 training images of the subset's split)", seconds)
    assert VALIDATION_PASSED in output, output[-3000:]
    model = course.source("resnet").with_name("resnet20.keras")
    assert model.is_file()
    shipped = shipped_20_layer_model(course.root)

    spare = tmp_path_factory.mktemp("models")
    source = read_notebook(course.source("resnet"))
    course.submit("reference", "resnet", source, {"resnet20.keras": model})
    course.submit("twin", "resnet", source, {"resnet20.keras": model})  # a copied submission
    # a copy whose channels are permuted and rescaled: other weights, the same function
    permuted = _reparametrised_copy(keras.models.load_model(model, safe_mode=True))
    permuted.save(spare / "permuted.keras")
    course.submit("permuted", "resnet", source, {"resnet20.keras": spare / "permuted.keras"})
    course.submit("seen", "resnet", source, {"resnet20.keras": model})
    course.submit("no_model", "resnet", source)
    course.submit("blank", "resnet", course.release("resnet"))
    course.submit("constants", "resnet", with_solutions_replaced(
        read_notebook(course.release("resnet")), constant_answers(repo_root, "resnet")),
        {"resnet20.keras": shipped})
    course.submit("corrupt", "resnet", source, {"resnet20.keras": b"PK\x03\x04 not a model"})
    course.submit("wrong", "resnet", source,
                  {"resnet20.keras": _wrong_model_file(spare / "toy.keras")})
    course.submit("unsafe", "resnet", source,
                  {"resnet20.keras": _unsafe_model_file(spare / "lambda.keras")})
    course.submit("padded", "resnet", source,
                  {"resnet20.keras": _padded_model_file(spare / "padded.keras", model)})
    course.submit("shipped", "resnet", source, {"resnet20.keras": shipped})
    autograded = ("reference", "no_model", "blank", "constants")
    _, seconds = course.nbgrader(
        "autograde", "resnet", WITHOUT_FEEDBACK_KERNEL, "--CourseDirectory.student_id_exclude="
        + ",".join(sorted(set(RESNET_STUDENTS) - set(autograded))))
    report_timing(f"nbgrader autograde resnet, {len(autograded)} submissions in one command (no "
                  "feedback kernel)", seconds)
    output, seconds = course.python("-m", "cnnbook.grading", "accuracy", "resnet",
                                    "--training-set", "cifar10-subset", "--jobs", "2")
    report_timing(f"python -m cnnbook.grading accuracy resnet ({len(RESNET_STUDENTS)} "
                  "submissions, one process each, two at a time)", seconds)
    # the instructor's private image set, here labelled with the network's own answers: what a
    # network that has learnt the test images by heart looks like to the grader (training one
    # that far is beyond the suite's budget)
    with np.load(next(Path(cifar_subset_dir).glob("*.npz"))) as archive:
        images = archive["x_test"][:2000]
    trained = keras.models.load_model(model, safe_mode=True)
    answers = np.argmax(np.asarray(trained.predict(images, batch_size=500, verbose=0)), axis=-1)
    np.savez(spare / "private.npz", x_test=images, y_test=answers.astype("uint8"))
    private_output, _ = course.python("-m", "cnnbook.grading", "accuracy", "resnet",
                                      "--training-set", "cifar10-subset", "--student", "seen",
                                      "--test-images", str(spare / "private.npz"))
    course.nbgrader("generate_feedback", "resnet")
    return {"scores": gradebook_scores(course.root, "resnet"), "grader_output": output,
            "accuracy": measured_accuracy(model, cifar_subset_dir),
            "private_output": private_output, "source": source, "root": course.root}


@resnet_grading
def test_release_refuses_a_source_folder_that_holds_a_trained_model(course, resnet_grades):
    with pytest.raises(AssertionError, match="never released"):
        course.python("-m", "cnnbook.grading.release", "resnet")


@resnet_grading
def test_resnet_reference_gets_every_test_and_the_tier_of_its_accuracy(resnet_grades, repo_root):
    source, scores = resnet_grades["source"], resnet_grades["scores"]
    reference = scores["reference"]
    assert reference["code_score"] == reference["max_code_score"] == auto_points(source)
    points, _, manual, needs_manual = reference["grades"]["resnet20_test_accuracy"]
    comment = reference["comments"]["resnet20_test_accuracy"]
    accuracy = resnet_grades["accuracy"]  # measured with Keras, not by the grader
    assert accuracy_points(repo_root, "resnet", accuracy) > 0, (
        f"{accuracy:.2%} reaches no tier: train longer (RESNET_EPOCHS) to test a graded network")
    assert points == manual == accuracy_points(repo_root, "resnet", accuracy), (accuracy, comment)
    assert not needs_manual, comment
    assert f"test accuracy of {accuracy:.2%} on 10,000 held-out CIFAR-10 test images" in comment, (
        accuracy, comment)
    assert "grader's own resnet20" in comment
    print(comment)


@resnet_grading
def test_identical_submissions_are_reported_not_zeroed(resnet_grades):
    """The permuted copy holds other weights but computes the same function: reported with the
    plain copies."""
    assert ("same function (logits on 256 test images correlate >= 0.99): permuted, reference, "
            "seen, twin") in resnet_grades["grader_output"], resnet_grades["grader_output"]
    twin = resnet_grades["scores"]["twin"]["grades"]["resnet20_test_accuracy"]
    assert twin[0] == resnet_grades["scores"]["reference"]["grades"]["resnet20_test_accuracy"][0]


@resnet_grading
def test_a_network_measured_on_images_it_trained_on_is_left_for_review(resnet_grades):
    """On a private image set whose labels it knows by heart the network does far better than on
    the validation images: the grade is recorded, flagged for an instructor, and the feedback
    says why."""
    seen = resnet_grades["scores"]["seen"]
    points, _, manual, needs_manual = seen["grades"]["resnet20_test_accuracy"]
    comment = seen["comments"]["resnet20_test_accuracy"]
    assert needs_manual and manual == points, comment
    assert "instructor's private test set" in comment and "2,000 images" in comment, comment
    assert "An instructor will review this grade" in comment, comment
    assert "seen: better on the test images" in resnet_grades["private_output"]
    reference = resnet_grades["scores"]["reference"]
    assert not reference["grades"]["resnet20_test_accuracy"][3], "an honest grade is not flagged"


@resnet_grading
def test_resnet_without_a_model_keeps_its_architecture_points_only(resnet_grades):
    source, no_model = resnet_grades["source"], resnet_grades["scores"]["no_model"]
    needs_the_model = ("test_saved_model", "test_lesion_drops")
    assert no_model["code_score"] == auto_points(source) - points_of(source, *needs_the_model)
    assert no_model["grades"]["resnet20_test_accuracy"][0] == 0
    assert "there is no resnet20.keras" in no_model["comments"]["resnet20_test_accuracy"]


@resnet_grading
def test_resnet_blank_release_gets_zero(resnet_grades):
    blank = resnet_grades["scores"]["blank"]
    assert blank["score"] == 0 and blank["code_score"] == 0


@resnet_grading
def test_resnet_constants_and_the_shipped_model_score_no_more_than_stated(resnet_grades):
    constants = resnet_grades["scores"]["constants"]
    print(f"resnet: the book's lesion drops and shipped model score {constants['score']:g} of "
          f"{constants['max_score']:g}")
    assert constants["score"] <= CONSTANTS_SCORE["resnet"], constants["grades"]
    assert "a model the course ships" in constants["comments"]["resnet20_test_accuracy"]


@resnet_grading
@pytest.mark.parametrize("student, reason", [
    ("corrupt", "could not be loaded with safe_mode=True"),
    ("unsafe", "could not be loaded with safe_mode=True"),
    ("wrong", "is not the resnet20 asked for: it has no layer with weights named stem_conv"),
    ("padded", "is not the resnet20 asked for: it has weights the network asked for does not "
               "have (6,313,994 values in memory, memory_logits)"),
    ("shipped", "resnet20.keras is refused: 20 of its 20 weight arrays are those of a shipped "
                "20-layer network"),
])
def test_broken_padded_copied_or_wrong_models_get_zero_with_a_reason(resnet_grades, student,
                                                                     reason):
    result = resnet_grades["scores"][student]
    assert result["grades"]["resnet20_test_accuracy"][0] == 0
    comment = result["comments"]["resnet20_test_accuracy"]
    if student == "shipped":  # the course's 20-layer network, whatever results/ calls it
        name = shipped_20_layer_model(resnet_grades["root"]).name
        reason = reason.replace("a shipped 20-layer network", f"{name}, a model the course ships")
    assert reason in comment


@resnet_grading
def test_resnet_feedback_shows_the_accuracy_verdict(course, resnet_grades):
    for student in ("reference", "no_model"):
        html = (course.root / "feedback" / student / "resnet" / "resnet.html").read_text()
        comment = resnet_grades["scores"][student]["comments"]["resnet20_test_accuracy"]
        assert comment.split(".")[0] in html, student


# --- The guide's commands, verbatim, on submissions collected from a real zip ---------------------


VERBATIM = "<!-- tests/test_course.py runs the next block verbatim -->"


def guide_commands(repo_root) -> list[str]:
    """The command lines of the blocks of ``solutions/README.md`` marked :data:`VERBATIM`."""
    guide = (repo_root / "solutions" / "README.md").read_text()
    commands = []
    for block in guide.split(VERBATIM)[1:]:
        body = block.split("```bash\n", 1)[1].split("```", 1)[0]
        commands += [line.split("  #")[0].strip() for line in body.splitlines()
                     if line.strip() and not line.startswith("#")]
    return commands


@resnet_grading
def test_guide_collects_a_zip_and_grades_with_its_commands_verbatim(
    repo_root, cifar_subset_dir, tmp_path_factory, resnet_grades, course, report_timing
):
    commands = guide_commands(repo_root)
    assert any(command.startswith("nbgrader zip_collect") for command in commands), commands
    assert "python -m cnnbook.grading accuracy resnet --training-set cifar10-subset" in commands
    guide = Course.copy_of(repo_root, tmp_path_factory.mktemp("guide"), course.environment)
    guide.python("-m", "cnnbook.grading.release")
    # what a learning platform hands out: one zip, files named <student>_<file>
    trained = course.source("resnet").with_name("resnet20.keras")
    for assignment, files in {
        "resnet": {"alice_resnet.ipynb": course.source("resnet"),
                   "alice_resnet20.keras": trained,
                   "bob_resnet.ipynb": course.release("resnet")},
        "sizing": {"alice_sizing.ipynb": course.source("sizing")},
        "parameters": {"alice_parameters.ipynb": course.source("parameters")},
    }.items():
        archive = guide.root / "downloaded" / assignment / "archive"
        archive.mkdir(parents=True)
        with zipfile.ZipFile(archive / "submissions.zip", "w") as bundle:
            for name, path in files.items():
                bundle.write(path, name)
    start = time.perf_counter()
    for command in commands:
        guide.run(*shlex.split(command))
    report_timing(f"the guide's {len(commands)} commands on 4 zipped submissions",
                  time.perf_counter() - start)
    submitted = guide.root / "submitted"
    assert sorted(path.name for path in (submitted / "alice" / "resnet").iterdir()) == [
        "resnet.ipynb", "resnet20.keras"]
    assert (submitted / "bob" / "resnet" / "resnet.ipynb").is_file()
    scores = gradebook_scores(guide.root, "resnet")
    # every test, the tier of the trained network's accuracy; the written answer waits (2 points)
    accuracy_grade = scores["alice"]["grades"]["resnet20_test_accuracy"]
    assert accuracy_grade[0] == resnet_grades["scores"]["reference"]["grades"][
        "resnet20_test_accuracy"][0] == accuracy_points(repo_root, "resnet",
                                                        resnet_grades["accuracy"])
    assert scores["alice"]["score"] == scores["alice"]["max_score"] - 2 - (
        points_of(resnet_grades["source"], "resnet20_test_accuracy") - accuracy_grade[0])
    assert scores["bob"]["score"] == 0
    assert gradebook_scores(guide.root, "sizing")["alice"]["code_score"] == 12
    assert gradebook_scores(guide.root, "parameters")["alice"]["code_score"] == 13
    assert (guide.root / "feedback" / "alice" / "resnet" / "resnet.html").is_file()
    assert (guide.root / "grades.csv").is_file()
