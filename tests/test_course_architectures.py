"""The ``architectures`` assignment end to end (issue 16), with the helpers of
``tests/test_course.py``: the committed notebooks, the grader's own plain and separable CNNs, and,
in a temporary copy of the course, the real nbgrader commands and the accuracy grader.

The slow fixture trains the reference networks once, through ``nbgrader validate`` of the source
with ``CNNBOOK_EPOCHS=ARCHITECTURES_EPOCHS`` (the run that measured the subset's tiers), then
autogrades the reference, a blank release, a submission without models, one whose cost functions
are tables of the visible examples and hostile ones, and grades both saved models' accuracy.
"""

from __future__ import annotations

import html
import json
import math

import numpy as np
import pytest
from nbgrader_course import (
    GRADE_ID,
    NO_TEST_PASSED,
    VALIDATION_PASSED,
    WITHOUT_FEEDBACK_KERNEL,
    Course,
    accuracy_points,
    auto_points,
    course_environment,
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

from cnnbook.grading import evaluation, reference_networks, tiers

# trains two networks and grades a batch: minutes, handed out first (tests/conftest.py)
pytestmark = pytest.mark.long_unit


def grading_batch(test):
    """The marks of a test that takes :func:`graded` (it trains both networks and grades a
    class): slow, and run by `make test-grading` instead of `make test`."""
    return pytest.mark.grading_batch(pytest.mark.slow(test))


ASSIGNMENT = "architectures"
ARCHITECTURES_EPOCHS = "1"
"""Epochs the suite trains each reference network for (CNNBOOK_EPOCHS), on the 9,000 training
images of the subset's split: real trained networks to grade end to end. Their points are the
tier their own accuracy reaches, measured here with Keras; the run that set the tiers (3 epochs)
is benchmarks/reference_tiers.py, whose record tests/test_course.py checks."""
ENTRIES = {"plain": "architectures-plain", "separable": "architectures-separable"}
MODEL_FILES = {"plain": "plain_cnn.keras", "separable": "separable_cnn.keras"}
COST_TESTS = ("test_inception_costs", "test_bottleneck_costs", "test_separable_costs",
              "test_se_costs", "test_inverted_residual_costs")


def _source(repo_root) -> dict:
    return read_notebook(repo_root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")


def _run_cells(repo_root, *grade_ids) -> dict:
    """The source notebook's cells ``grade_ids`` run as a notebook would (module ``__main__``)."""
    namespace = {"__name__": "__main__"}
    for cell in _source(repo_root)["cells"]:
        if nbgrader_metadata(cell).get("grade_id") in grade_ids:
            exec(compile(source_of(cell), "<architectures notebook>", "exec"), namespace)
    return namespace


# --- The committed notebooks ---------------------------------------------------------------------


def test_source_and_release_are_committed_without_outputs(repo_root):
    for folder in ("solutions", "exercises"):
        for cell in read_notebook(repo_root / folder / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, (
                    folder, cell["id"])


def test_every_answer_has_a_graded_cell_with_visible_and_hidden_tests(repo_root):
    notebook = _source(repo_root)
    grade_ids = [nbgrader_metadata(cell)["grade_id"] for cell in notebook["cells"]
                 if nbgrader_metadata(cell)]
    assert len(grade_ids) == len(set(grade_ids)) and all(map(GRADE_ID.match, grade_ids))
    graded = grade_cells(notebook)
    for grade_id, cell in graded.items():
        assert float(nbgrader_metadata(cell)["points"]) > 0, grade_id
        if cell["cell_type"] == "code" and not nbgrader_metadata(cell).get("solution"):
            text = source_of(cell)
            assert "assert" in text.split("### BEGIN HIDDEN TESTS")[0], grade_id
            assert "### BEGIN HIDDEN TESTS" in text, grade_id
    # every block and its costs: a builder test and a cost test each, plus the experiment
    for block in ("inception", "bottleneck", "separable", "se", "inverted_residual"):
        assert f"test_{block}_costs" in graded
    assert auto_points(notebook) == 24
    assert points_of(notebook, "plain_cnn_test_accuracy", "separable_cnn_test_accuracy",
                     "accuracy_per_mac_written_answer") == 6


def test_release_holds_no_solution_line_and_no_hidden_test(repo_root):
    protected, _ = split_protected_lines(_source(repo_root))
    protected = {line for line in protected if len(line) >= 8}
    assert len(protected) > 100
    release = repo_root / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    text = release.read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    lines = {line.strip() for cell in read_notebook(release)["cells"]
             for line in source_of(cell).splitlines()}
    assert not sorted(protected & lines)[:5]


def test_first_cell_links_the_architectures_chapter_and_the_chapter_links_back(repo_root):
    page = (repo_root / "book" / "architectures.md").read_text()
    title = next(line[2:].strip() for line in page.splitlines() if line.startswith("# "))
    assert title == "Known ConvNet architectures"
    assert f"[{title}](../../book/architectures.md)" in source_of(_source(repo_root)["cells"][0])
    assert "```{launch-assignment} architectures" in page


def test_accuracy_cells_match_the_grader_settings(repo_root):
    config = tiers.load_course_config(repo_root)
    notebook = _source(repo_root)
    for kind, entry in ENTRIES.items():
        for training_set in config.AccuracyGrader.assignments[entry]["tiers"]:
            rule = tiers.accuracy_rule(config, entry, training_set, repo_root,
                                       accept_unmeasured=True)
            assert (rule.assignment, rule.notebook, rule.model_file) == (
                ASSIGNMENT, ASSIGNMENT, MODEL_FILES[kind])
            cell = grade_cells(notebook)[rule.grade_id]
            assert nbgrader_metadata(cell).get("task")
            assert points_of(notebook, rule.grade_id) == rule.max_points, (entry, training_set)
        assert config.Autograde.exclude_overwriting[ASSIGNMENT] == list(MODEL_FILES.values())


def _kernel_macs(model) -> int:
    """MACs of the layers with a kernel: output positions times kernel size (Keras's shapes)."""
    return sum(math.prod(layer.output.shape[1:-1]) * math.prod(layer.kernel.shape)
               for layer in model.layers if getattr(layer, "kernel", None) is not None)


def test_grader_builds_the_notebooks_networks_at_about_equal_macs(repo_root):
    student = _run_cells(repo_root, "architectures_setup", "depthwise_separable_conv",
                         "experiment_networks")
    for kind, builder in (("plain", "build_plain_cnn"), ("separable", "build_separable_cnn")):
        reference = reference_networks.REFERENCE_ARCHITECTURES[f"{kind}_cnn"]()
        notebook_network = student[builder]()
        assert [(layer.name, type(layer).__name__) for layer in reference.layers] == [
            (layer.name, type(layer).__name__) for layer in notebook_network.layers]
        assert reference.count_params() == notebook_network.count_params()
    plain = reference_networks.REFERENCE_ARCHITECTURES["plain_cnn"]()
    separable = reference_networks.REFERENCE_ARCHITECTURES["separable_cnn"]()
    # by hand: stem 32*32*27*32; plain 3x3 blocks; separable depthwise 9*C plus pointwise C*F
    plain_macs = 32 * 32 * 27 * 32 + 32 * 32 * 9 * 32 * 32 + 16 * 16 * 9 * (32 * 64 + 64 * 64) + (
        8 * 8 * 9 * (64 * 128 + 128 * 128)) + 128 * 10
    separable_macs = 32 * 32 * 27 * 32 + 32 * 32 * (9 * 32 + 32 * 104) + 16 * 16 * (
        9 * 104 + 104 * 208 + 9 * 208 + 208 * 208) + 8 * 8 * (
        9 * 208 + 208 * 416 + 9 * 416 + 416 * 416) + 416 * 10
    assert _kernel_macs(plain) == plain_macs and _kernel_macs(separable) == separable_macs
    assert abs(separable_macs / plain_macs - 1) < 0.02


def test_grader_loads_a_separable_networks_weights_by_name(repo_root):
    student = _run_cells(repo_root, "architectures_setup", "depthwise_separable_conv",
                         "experiment_networks")["build_separable_cnn"]()
    random = np.random.default_rng(0)
    student.set_weights([random.uniform(0.5, 1.5, w.shape).astype("float32") if "variance" in w.path
                         else random.normal(0, 0.1, w.shape).astype("float32")
                         for w in student.weights])
    reference = reference_networks.REFERENCE_ARCHITECTURES["separable_cnn"]()
    assert evaluation.load_weights_by_name(reference, student) == []
    images = random.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    assert np.allclose(np.asarray(reference(images)), np.asarray(student(images)), atol=1e-4)
    plain = reference_networks.REFERENCE_ARCHITECTURES["plain_cnn"]()
    problems = evaluation.load_weights_by_name(plain, student)
    assert problems and "block1_conv" in problems[0]


# --- The course, graded with nbgrader ------------------------------------------------------------


def _solution_parts(source: dict, grade_id: str) -> str:
    """The solution regions of the answer cell ``grade_id``, joined for with_solutions_replaced."""
    cell = next(cell for cell in source["cells"]
                if nbgrader_metadata(cell).get("grade_id") == grade_id)
    parts, inside = [], None
    for line in source_of(cell).splitlines():
        if line.strip() == "### BEGIN SOLUTION":
            inside = []
        elif line.strip() == "### END SOLUTION":
            indent = min(len(text) - len(text.lstrip()) for text in inside if text.strip())
            parts.append("\n".join(text[indent:] for text in inside))
            inside = None
        elif inside is not None:
            inside.append(line)
    return "\n#---\n".join(parts)


CONSTANT_COSTS = {
    # every cost function a table of the visible examples: the hidden tests must refuse them
    "inception_costs": "return 163_696\n#---\nreturn 128_049_152",
    "bottleneck_costs": "return 71_552\n#---\nreturn 56 * 56 * (256 * 64 + 9 * 64 * 64 + 64 * 256)",
    "separable_costs": "return 9 * 32 + 4 * 32 + 32 * 64 + 4 * 64\n#---\n"
                       "return 32 * 32 * (9 * 32 + 32 * 64)\n#---\nreturn 32 * 32 * 9 * 32 * 64",
    "se_costs": "return 97 * 4 + 5 * 96\n#---\nreturn 2 * 96 * 4 + 56 * 56 * 96",
    "inverted_residual_costs": "return 24 * 144 + 4 * 144 + 13 * 144 + 144 * 24 + 4 * 24\n#---\n"
                               "return 56 * 56 * (24 * 144 + 9 * 144 + 144 * 24)",
}
ANSWER_CELLS = ("inception_module", "inception_costs", "bottleneck_block", "bottleneck_costs",
                "depthwise_separable_conv", "separable_costs", "squeeze_excitation", "se_costs",
                "inverted_residual", "inverted_residual_costs", "experiment_networks")


@pytest.fixture(scope="module")
def architectures_course(repo_root, cifar_subset_dir, tmp_path_factory):
    environment = course_environment(repo_root, CNNBOOK_DATA=str(cifar_subset_dir),
                                     CNNBOOK_EPOCHS=ARCHITECTURES_EPOCHS)
    return Course.copy_of(repo_root, tmp_path_factory.mktemp("course"), environment)


@pytest.fixture(scope="module")
def graded(architectures_course, repo_root, report_timing, cifar_subset_dir):
    """Validate (trains both reference networks), release, autograde five submissions, grade
    both models' accuracy, generate feedback."""
    course = architectures_course
    output, seconds = course.nbgrader("validate", str(course.source(ASSIGNMENT)))
    report_timing(f"nbgrader validate solutions/architectures (trains both networks, "
                  f"{ARCHITECTURES_EPOCHS} epochs each on the subset's 9,000 images)", seconds)
    assert VALIDATION_PASSED in output, output[-3000:]
    models = {kind: course.source(ASSIGNMENT).with_name(name) for kind, name in MODEL_FILES.items()}
    assert all(path.is_file() for path in models.values())
    kept = {}
    for kind, path in models.items():  # the release refuses a folder holding a trained model
        kept[kind] = course.root / path.name
        path.rename(kept[kind])
    release_output, seconds = course.python("-m", "cnnbook.grading.release", ASSIGNMENT)
    report_timing("python -m cnnbook.grading.release architectures", seconds)
    source, release = read_notebook(course.source(ASSIGNMENT)), read_notebook(
        course.release(ASSIGNMENT))
    files = {MODEL_FILES[kind]: path for kind, path in kept.items()}
    answers = {grade_id: _solution_parts(source, grade_id) for grade_id in ANSWER_CELLS}
    course.submit("reference", ASSIGNMENT, with_solutions_replaced(release, answers), files)
    course.submit("blank", ASSIGNMENT, release)
    course.submit("no_models", ASSIGNMENT, with_solutions_replaced(release, answers))
    course.submit("constants", ASSIGNMENT,
                  with_solutions_replaced(release, {**answers, **CONSTANT_COSTS}), files)
    # hostile: the cost cell hands in cnnbook's reference code; the plain model file is the
    # separable one (another architecture) and the separable one is a model the course ships
    hostile = dict(answers,
                   se_costs="from cnnbook.counting import formulas\nreturn 0\n#---\nreturn 0")
    shipped_models = sorted((course.root / "results").glob("*/*.keras"))
    assert shipped_models, "the course ships no model in results/*/*.keras to copy"
    shipped = shipped_models[0]  # whichever the book ships now (results/ is regenerated at times)
    course.submit("hostile", ASSIGNMENT, with_solutions_replaced(release, hostile),
                  {"plain_cnn.keras": kept["separable"], "separable_cnn.keras": shipped})
    _, seconds = course.nbgrader("autograde", ASSIGNMENT, WITHOUT_FEEDBACK_KERNEL)
    report_timing("nbgrader autograde architectures, 5 submissions in one command (no feedback "
                  "kernel)", seconds)
    timings = {"5 submissions, one command": seconds}
    grader_output = {}
    for kind, entry in ENTRIES.items():
        grader_output[kind], seconds = course.python(
            "-m", "cnnbook.grading", "accuracy", entry, "--training-set", "cifar10-subset",
            "--jobs", "2")
        report_timing(f"python -m cnnbook.grading accuracy {entry} (5 submissions)", seconds)
    course.nbgrader("generate_feedback", ASSIGNMENT)
    return {"course": course, "source": source, "release_output": release_output,
            "accuracy": {kind: measured_accuracy(path, cifar_subset_dir)
                         for kind, path in kept.items()},
            "scores": gradebook_scores(course.root, ASSIGNMENT), "grader": grader_output,
            "timings": timings}


@grading_batch
def test_generated_release_is_the_committed_one(graded, repo_root):
    assert "released architectures" in graded["release_output"]
    generated = read_notebook(graded["course"].release(ASSIGNMENT))
    committed = read_notebook(repo_root / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    assert without_volatile_metadata(generated) == without_volatile_metadata(committed), (
        "exercises/architectures is stale: run `python -m cnnbook.grading.release architectures`")


@grading_batch
def test_unanswered_release_passes_no_test(graded):
    output, _ = graded["course"].nbgrader("validate", "--invert",
                                          str(graded["course"].release(ASSIGNMENT)))
    assert NO_TEST_PASSED in output, output[-3000:]


@grading_batch
def test_reference_gets_full_automatic_marks_and_the_tier_of_its_accuracy(graded, repo_root):
    source, reference = graded["source"], graded["scores"]["reference"]
    assert reference["code_score"] == reference["max_code_score"] == auto_points(source)
    for kind, entry in ENTRIES.items():
        grade_id = f"{kind}_cnn_test_accuracy"
        points, _, manual, needs_manual = reference["grades"][grade_id]
        comment = reference["comments"][grade_id]
        accuracy = graded["accuracy"][kind]  # measured with Keras, not by the grader
        assert accuracy_points(repo_root, entry, accuracy) > 0, (
            f"{accuracy:.2%} reaches no tier: train longer to test a graded network")
        print(f"{kind}: {comment}")
        assert points == manual == accuracy_points(repo_root, entry, accuracy), (accuracy, comment)
        assert not needs_manual, comment
        assert f"test accuracy of {accuracy:.2%} on 10,000" in comment, (accuracy, comment)
        assert f"grader's own {kind}_cnn" in comment
    print("autograding (s):", json.dumps(graded["timings"]))


@grading_batch
def test_blank_release_scores_zero(graded):
    blank = graded["scores"]["blank"]
    assert blank["score"] == 0 and blank["code_score"] == 0
    for kind in ENTRIES:
        assert "there is no" in blank["comments"][f"{kind}_cnn_test_accuracy"]


@grading_batch
def test_without_models_only_the_cells_that_need_them_fail(graded):
    source, no_models = graded["source"], graded["scores"]["no_models"]
    assert no_models["code_score"] == auto_points(source) - points_of(source, "test_saved_models")


@grading_batch
def test_hard_coded_costs_pass_no_cost_test(graded):
    source, constants = graded["source"], graded["scores"]["constants"]
    assert constants["code_score"] == auto_points(source) - points_of(source, *COST_TESTS)
    for grade_id in COST_TESTS:
        assert constants["grades"][grade_id][0] == 0, grade_id


@grading_batch
def test_hostile_submission_loses_only_what_it_cheated_on(graded):
    source, hostile = graded["source"], graded["scores"]["hostile"]
    # se_costs imports cnnbook.counting (not there to import where it is graded); plain_cnn.keras
    # is the separable network, which test_saved_models refuses as well as the grader
    assert hostile["code_score"] == auto_points(source) - points_of(
        source, "test_se_costs", "test_saved_models")
    assert hostile["grades"]["test_se_costs"][0] == 0
    assert hostile["grades"]["test_saved_models"][0] == 0
    assert hostile["grades"]["plain_cnn_test_accuracy"][0] == 0
    assert "is not the plain_cnn asked for" in hostile["comments"]["plain_cnn_test_accuracy"]
    assert hostile["grades"]["separable_cnn_test_accuracy"][0] == 0
    assert "a model the course ships" in hostile["comments"]["separable_cnn_test_accuracy"]


@grading_batch
def test_feedback_shows_no_hidden_test_line(graded):
    protected, _ = split_protected_lines(graded["source"])
    hidden = {line for line in protected if len(line) >= 20 and "assert" in line}
    assert len(hidden) > 20
    for student in ("reference", "constants"):
        page = html.unescape((graded["course"].root / "feedback" / student / ASSIGNMENT /
                              f"{ASSIGNMENT}.html").read_text())
        shown = [line for line in hidden if line in page]
        assert not shown, shown[:3]


@grading_batch
def test_identical_reference_and_constants_models_are_reported(graded):
    for kind in ENTRIES:
        assert ("same function (logits on 256 test images correlate >= 0.99): constants, "
                "reference") in graded["grader"][kind], graded["grader"][kind]


def test_tiers_of_the_subset_were_measured(repo_root):
    config = tiers.load_course_config(repo_root)
    for entry in ENTRIES.values():
        rule = tiers.accuracy_rule(config, entry, "cifar10-subset", repo_root)
        assert "CNNBOOK_EPOCHS=3" in rule.tiers_source and "%" in rule.tiers_source
