"""The graded course end to end, with the real nbgrader commands in a temporary copy of the course.

What an instructor does (solutions/README.md) is what these tests do: validate the sources,
regenerate the student versions and compare them with the committed exercises/, validate the
unanswered release, autograde reference, blank and partly correct submissions, grade the trained
ResNet-20 models with ``python -m cnnbook.grade accuracy``, generate feedback and export grades.
The fast tests at the top read the committed notebooks only.

Grading times are printed in the run's summary (``report_timing``), not asserted.
"""

from __future__ import annotations

import csv
import math

import keras
import pytest
from nbgrader_course import (
    ASSIGNMENTS,
    GRADE_ID,
    NO_TEST_PASSED,
    VALIDATION_PASSED,
    Course,
    auto_points,
    course_environment,
    edit_cell,
    gradebook_scores,
    grade_cells,
    nbgrader_metadata,
    points_of,
    read_notebook,
    source_of,
    split_protected_lines,
    without_volatile_metadata,
)

from cnnbook import grade
from cnnbook.models import resnet_cifar, toy_cnn

QUICK_ASSIGNMENTS = ("sizing", "parameters")
RESNET_EPOCHS = "6"
"""Epochs of the reference ResNet-20 on the 10,000-image subset (CNNBOOK_EPOCHS): about two
minutes on a 2-core CPU, and enough for the top tier of the subset's thresholds."""


# --- The committed notebooks ---------------------------------------------------------------------


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
    config = grade.load_course_config(repo_root)
    notebook = read_notebook(repo_root / "solutions" / "resnet" / "resnet.ipynb")
    for training_set in config.AccuracyGrader.assignments["resnet"]["tiers"]:
        rule = grade.accuracy_rule(config, "resnet", training_set)
        cell = grade_cells(notebook)[rule.grade_id]
        assert nbgrader_metadata(cell).get("task"), "the accuracy cell is a manually graded task"
        assert points_of(notebook, rule.grade_id) == rule.max_points, training_set


# --- The grading helpers ---------------------------------------------------------------------------


def _notebook_functions(code: str) -> dict:
    """Run ``code`` as a notebook would (module ``__main__``) and return its namespace."""
    namespace = {"__name__": "__main__"}
    exec(compile(code, "<notebook>", "exec"), namespace)
    return namespace


def test_check_written_here_accepts_own_code_and_rejects_cnnbook_and_forbidden_packages():
    cells = _notebook_functions(
        "import math, keras, cnnbook.sizing\n"
        "from cnnbook.sizing import conv_output_size as reference\n"
        "from cnnbook.models import image_input\n"
        "def own(w, k, s=1): return (w - k) // s + 1\n"
        "def calls_own(w, k): return [own(w, k) for _ in range(1)][0]\n"
        "def delegates(w, k): return reference(w, k)\n"
        "def through_module(w, k): return cnnbook.sizing.conv_output_size(w, k)\n"
        "def helper(w, k): return reference(w, k)\n"
        "def through_helper(w, k): return helper(w, k)\n"
        "def in_lambda(w, k): return (lambda: reference(w, k))()\n"
        "def uses_keras(w, k): return keras.layers.Conv2D(1, k)\n"
        "def given_input(): return image_input()\n"
    )
    grade.check_written_here(cells["own"], forbid=("keras",))
    grade.check_written_here(cells["calls_own"], forbid=("keras",))
    grade.check_written_here(cells["uses_keras"])
    grade.check_written_here(cells["given_input"], may_use=("image_input",))
    for name in ("delegates", "through_module", "through_helper", "in_lambda", "given_input"):
        with pytest.raises(AssertionError, match="own code"):
            grade.check_written_here(cells[name])
    with pytest.raises(AssertionError, match="keras"):
        grade.check_written_here(cells["uses_keras"], forbid=("keras",))
    with pytest.raises(AssertionError, match="cnnbook.sizing"):
        grade.check_written_here(cells["reference"])
    with pytest.raises(ValueError, match="function"):
        grade.check_written_here(42)


def test_points_for_gives_the_highest_tier_reached():
    tiers = grade.checked_tiers([[0.5, 3], [0.55, 4], [0.35, 1]], "test")
    assert tiers == ((0.55, 4.0), (0.5, 3.0), (0.35, 1.0))
    assert [grade.points_for(accuracy, tiers) for accuracy in (0.9, 0.55, 0.54, 0.35, 0.1)] == [
        4, 4, 3, 1, 0]
    for bad in ([[1.5, 4]], [[0.5, -1]], [], [[0.9, 1], [0.5, 2]], [["high", 4]]):
        with pytest.raises(ValueError):
            grade.checked_tiers(bad, "test")


def test_grader_accepts_the_paper_resnet20_and_rejects_other_models(repo_root):
    config = grade.load_course_config(repo_root)
    rule = grade.accuracy_rule(config, "resnet", "cifar10")
    # cnnbook's own ResNet-20 (nested blocks, option A) is an independent build of the same network
    assert grade.inspect_model(resnet_cifar(20), rule.trainable_params, rule.residual_additions) == []
    problems = grade.inspect_model(toy_cnn(), rule.trainable_params, rule.residual_additions)
    assert any("Add layers" in problem for problem in problems)
    assert any("trainable parameters" in problem for problem in problems)
    option_b = grade.inspect_model(resnet_cifar(20, shortcut="B"), rule.trainable_params,
                                   rule.residual_additions)
    assert option_b == ["it has 272,474 trainable parameters, the assignment's ResNet-20 has "
                        "269,722"]
    with pytest.raises(ValueError, match="training set 'imagenet'"):
        grade.accuracy_rule(config, "resnet", "imagenet")
    with pytest.raises(ValueError, match="no accuracy grading"):
        grade.accuracy_rule(config, "sizing")


# --- The course, graded with nbgrader ------------------------------------------------------------


@pytest.fixture(scope="module")
def course(repo_root, cifar_subset_dir, tmp_path_factory):
    environment = course_environment(repo_root, CNNBOOK_DATA=str(cifar_subset_dir),
                                     CNNBOOK_EPOCHS=RESNET_EPOCHS)
    return Course.copy_of(repo_root, tmp_path_factory.mktemp("course"), environment)


@pytest.fixture(scope="module")
def released(course, report_timing):
    """The release regenerated in the temporary course with ``python -m cnnbook.release``."""
    output, seconds = course.python("-m", "cnnbook.release")
    report_timing("python -m cnnbook.release (three assignments)", seconds)
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
        f"exercises/{assignment} is stale: run `python -m cnnbook.release {assignment}` and commit"
    )
    assert sorted(path.name for path in course.release(assignment).parent.iterdir()) == [
        f"{assignment}.ipynb"]


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_unanswered_release_passes_no_test(course, released, assignment):
    output, _ = course.nbgrader("validate", "--invert", str(course.release(assignment)))
    assert NO_TEST_PASSED in output, output[-3000:]


PARTLY_CORRECT = {
    # assignment: (answer cell, text replaced, wrong text, test cells expected to fail)
    "sizing": ("alexnet_answers", "alexnet_224_unused_rows = 224 - last_row_read",
               "alexnet_224_unused_rows = 0", ("test_alexnet_first_layer",)),
    "parameters": ("parameter_rules", "return 4 * channels", "return 2 * channels",
                   ("test_batchnorm_params",)),
}


@pytest.fixture(scope="module")
def quick_grades(course, released, report_timing):
    """Reference, blank and partly correct submissions of sizing and parameters, autograded one
    student at a time (timed), with feedback generated and grades exported."""
    scores = {}
    for assignment in QUICK_ASSIGNMENTS:
        source = read_notebook(course.source(assignment))
        cell, old, new, _ = PARTLY_CORRECT[assignment]
        course.submit("reference", assignment, source)
        course.submit("blank", assignment, course.release(assignment))
        course.submit("partial", assignment, edit_cell(source, cell, old, new))
        for student in ("reference", "blank", "partial"):
            _, seconds = course.nbgrader("autograde", assignment, "--student", student)
            report_timing(f"nbgrader autograde {assignment}, one submission ({student})", seconds)
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
        assert f"{result['score']:g} / " in html or f"{result['score']} / " in html, student


@pytest.mark.slow
def test_grades_export_has_one_row_per_student_and_assignment(course, quick_grades):
    course.nbgrader("export", "--to", "grades.csv")
    with open(course.root / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for assignment in QUICK_ASSIGNMENTS:
        students = [row["student_id"] for row in rows if row["assignment"] == assignment]
        assert sorted(students) == ["blank", "partial", "reference"], rows
        for row in rows:
            if row["assignment"] == assignment:
                expected = quick_grades[assignment][row["student_id"]]["score"]
                assert math.isclose(float(row["raw_score"]), expected), row


# --- The resnet assignment: training, autograding without retraining, accuracy grading ----------


def _wrong_model_file(path):
    """A valid .keras file that is not a ResNet-20: the book's toy network."""
    toy_cnn().save(path)
    return path


def _unsafe_model_file(path):
    """A ResNet-sized model that hides code in a Lambda layer, which safe_mode refuses to load."""
    images = keras.Input(shape=(32, 32, 3))
    scores = keras.layers.Dense(10)(keras.layers.Flatten()(keras.layers.Lambda(lambda x: x / 255)(images)))
    keras.Model(images, scores).save(path)
    return path


@pytest.fixture(scope="module")
def resnet_grades(course, released, tmp_path_factory, report_timing):
    """Train the reference through ``nbgrader validate`` of the source, autograde it and two
    incomplete submissions, grade the accuracy of every submitted model, generate feedback."""
    output, seconds = course.nbgrader("validate", str(course.source("resnet")))
    report_timing(f"nbgrader validate solutions/resnet (trains ResNet-20, {RESNET_EPOCHS} epochs "
                  "on the 10,000-image subset)", seconds)
    assert VALIDATION_PASSED in output, output[-3000:]
    model = course.source("resnet").with_name("resnet20.keras")
    assert model.is_file()

    spare = tmp_path_factory.mktemp("models")
    source = read_notebook(course.source("resnet"))
    course.submit("reference", "resnet", source, {"resnet20.keras": model})
    course.submit("no_model", "resnet", source)
    course.submit("blank", "resnet", course.release("resnet"))
    course.submit("corrupt", "resnet", source, {"resnet20.keras": b"PK\x03\x04 not a model"})
    course.submit("wrong", "resnet", source,
                  {"resnet20.keras": _wrong_model_file(spare / "toy.keras")})
    course.submit("unsafe", "resnet", source,
                  {"resnet20.keras": _unsafe_model_file(spare / "lambda.keras")})
    for student in ("reference", "no_model", "blank"):
        _, seconds = course.nbgrader("autograde", "resnet", "--student", student)
        report_timing(f"nbgrader autograde resnet, one submission ({student})", seconds)
    output, seconds = course.python("-m", "cnnbook.grade", "accuracy", "resnet",
                                    "--training-set", "cifar10-subset")
    report_timing("python -m cnnbook.grade accuracy resnet (six submissions, one process each)",
                  seconds)
    course.nbgrader("generate_feedback", "resnet")
    return {"scores": gradebook_scores(course.root, "resnet"), "grader_output": output,
            "source": source}


@pytest.mark.slow
def test_release_refuses_a_source_folder_that_holds_a_trained_model(course, resnet_grades):
    with pytest.raises(AssertionError, match="never released"):
        course.python("-m", "cnnbook.release", "resnet")


@pytest.mark.slow
def test_resnet_reference_gets_full_marks_from_its_saved_model(resnet_grades):
    source, scores = resnet_grades["source"], resnet_grades["scores"]
    reference = scores["reference"]
    assert reference["code_score"] == reference["max_code_score"] == auto_points(source)
    points, _, manual, needs_manual = reference["grades"]["resnet20_test_accuracy"]
    assert points == manual == points_of(source, "resnet20_test_accuracy") and not needs_manual, (
        reference["comments"]["resnet20_test_accuracy"]
    )
    print(reference["comments"]["resnet20_test_accuracy"])


@pytest.mark.slow
def test_resnet_without_a_model_keeps_its_architecture_points_only(resnet_grades):
    source, no_model = resnet_grades["source"], resnet_grades["scores"]["no_model"]
    needs_the_model = ("test_saved_model", "test_lesion_drops")
    assert no_model["code_score"] == auto_points(source) - points_of(source, *needs_the_model)
    assert no_model["grades"]["resnet20_test_accuracy"][0] == 0
    assert "there is no resnet20.keras" in no_model["comments"]["resnet20_test_accuracy"]


@pytest.mark.slow
def test_resnet_blank_release_gets_zero(resnet_grades):
    blank = resnet_grades["scores"]["blank"]
    assert blank["score"] == 0 and blank["code_score"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("student, reason", [
    ("corrupt", "could not be loaded with safe_mode=True"),
    ("unsafe", "could not be loaded with safe_mode=True"),
    ("wrong", "is not the ResNet-20 asked for"),
])
def test_broken_or_wrong_models_get_zero_with_a_reason(resnet_grades, student, reason):
    result = resnet_grades["scores"][student]
    assert result["grades"]["resnet20_test_accuracy"][0] == 0
    assert reason in result["comments"]["resnet20_test_accuracy"]


@pytest.mark.slow
def test_resnet_feedback_shows_the_accuracy_verdict(course, resnet_grades):
    for student in ("reference", "no_model"):
        html = (course.root / "feedback" / student / "resnet" / "resnet.html").read_text()
        comment = resnet_grades["scores"][student]["comments"]["resnet20_test_accuracy"]
        assert comment.split(".")[0] in html, student
