"""The hostile corpus (tests/hostile_corpus.py) of each assignment it describes (``sizing`` and
``architectures``) graded in one batch with good submissions by the real ``nbgrader autograde`` of
the course's configuration, under the limits of ``hostile_corpus.TEST_LIMITS``; then feedback, and
a second autograde run of a representative subset. Each assignment has its own copy of the course
(a module fixture with one parameter per assignment), so its batch depends on nothing else.

Asserted for each kind: its code score (points of the tests expected to pass, read from the source
notebook's metadata), the cells left for manual grading, the reason shown in the graded notebook
or the log; for the batch: submitted files byte-identical afterwards, the gradebook intact (every
student and grade present, good scores unchanged), a second run giving identical grades, feedback
without hidden tests, and a wall time under ``BATCH_BOUND_S``.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import hostile_corpus as corpus_module
import pytest
from nbgrader_course import (
    Course,
    course_environment,
    gradebook_scores,
    nbgrader_metadata,
    points_of,
    read_notebook,
    source_of,
)

ASSIGNMENTS = tuple(corpus_module.ASSIGNMENTS)

RERUN = {
    # a good one, a killed kernel, a refused file, an attack on the student's own process
    "sizing": ("good_reference", "os_exit", "patched_keras", "shadowing_cnnbook_folder"),
    # fewer (its notebooks take longer): a good one and a killed process; the refused file and
    # cell are the same rules as in sizing
    "architectures": ("good_reference", "os_exit"),
}
"""Submissions graded a second time, in one command (a full second batch would double the
test's time)."""

FEEDBACK_KERNEL_KINDS = frozenset({
    # what attacks the kernel that runs for the student's feedback (its walls, its limits, its
    # outputs, the files it leaves, the log it writes to, what it could learn)
    "infinite_loop", "os_exit", "output_flood", "display_flood", "memory_bomb", "fork_bomb",
    "network_connection", "reads_solutions", "writes_elsewhere", "reads_test_images",
    "symlink_outside", "notebook_is_symlink", "shadowing_cnnbook_folder", "shadowing_numpy_file",
    "oversized_file", "leaves_links_behind", "forges_log_lines", "shell_escape",
    "prints_input_history",
    # and, beside them, kinds whose test cells the kernel also runs, so that what it prints there
    # is seen not to change a grade
    "good_reference", "tests_edited_to_pass", "patched_keras",
})
"""Kinds graded with the feedback kernel (the course's default); the others, whose grade is all
they test, are graded in a second command without it (``c.JudgeOutsideKernel.feedback_kernel =
False``), which takes about a third less CPU and gives the same grades (the second run checks
it). A new kind that attacks the kernel, its limits or its outputs belongs here, or its test
checks nothing."""

BATCH_BOUND_S = 20 * 60
"""Upper bound of one autograde run of one assignment's whole corpus, asserted: the 31
submissions of sizing took 476 s on the shared 2-core machine at a load of about 10 (15 s each,
one of them the 60 s timeout); a quiet machine takes well under half the bound."""


def _snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: a file's SHA-256, a symlink's target (never followed)."""
    entries = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            entries[key] = "-> " + os.readlink(path)
        elif path.is_file():
            entries[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            entries[key] = "dir"
    return entries


def _autograde(course: Course, assignment: str,
               *arguments: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", assignment,
                             *arguments], cwd=course.root, capture_output=True, text=True,
                            env=course.environment, timeout=BATCH_BOUND_S + 600)
    return result, time.perf_counter() - start


@pytest.fixture(scope="module", params=[
    # each batch is a work unit of its own (tests/conftest.py): the two run in parallel, in
    # `make test-grading` (the grading_batch mark)
    pytest.param(assignment, marks=[pytest.mark.xdist_group(f"test_hostile_corpus-{assignment}"),
                                    pytest.mark.long_unit, pytest.mark.grading_batch])
    # architectures' batch first: xdist hands the four batch units of `make test-grading` to two
    # workers in turn (the ResNet course, the architectures course, then these two), so the
    # shorter corpus goes with the longer course (2026-12-05: 482 + 235 s and 424 + 351 s,
    # against 482 + 351 s and 424 + 235 s in the other order)
    for assignment in sorted(ASSIGNMENTS)])
def graded(request, repo_root, cifar_subset_dir, tmp_path_factory, report_timing):
    assignment = request.param
    environment = course_environment(repo_root, CNNBOOK_DATA=str(cifar_subset_dir))
    course = Course.copy_of(repo_root, tmp_path_factory.mktemp(f"hostile-{assignment}"),
                            environment)
    limits = corpus_module.TEST_LIMITS
    with open(course.root / "nbgrader_config.py", "a") as config:
        config.write(
            "\n# the hostile corpus test's limits (tests/hostile_corpus.py TEST_LIMITS)\n"
            f"c.SandboxedExecute.timeout = {limits['timeout_s']}\n"
            f"c.GradingSandbox.memory_limit_mib = {limits['memory_limit_mib']}\n"
            f"c.GradingSandbox.max_processes = {limits['max_processes']}\n"
            f"c.GradingSandbox.max_output_bytes = {limits['max_output_bytes']}\n"
            f"c.GradingSandbox.max_file_bytes = {limits['max_file_bytes']}\n")
    course.nbgrader("generate_assignment", assignment, "--force")
    corpus = corpus_module.build(course.root, assignment)
    corpus_module.write(course.root, corpus, assignment)
    submitted_before = _snapshot(course.root / "submitted")
    solutions_before = _snapshot(course.root / "solutions")

    with_kernel = sorted(set(corpus) & FEEDBACK_KERNEL_KINDS)
    without_kernel = sorted(set(corpus) - FEEDBACK_KERNEL_KINDS)
    runs = [_autograde(course, assignment,
                       f"--CourseDirectory.student_id_exclude={','.join(without_kernel)}"),
            _autograde(course, assignment,
                       f"--CourseDirectory.student_id_exclude={','.join(with_kernel)}",
                       "--JudgeOutsideKernel.feedback_kernel=False")]
    first = SimpleNamespace(  # the two commands as one run: their status, their whole log
        returncode=max(result.returncode for result, _ in runs),
        stdout="".join(result.stdout for result, _ in runs),
        stderr="".join(result.stderr for result, _ in runs))
    seconds = sum(seconds for _, seconds in runs)
    report_timing(f"nbgrader autograde of the hostile corpus of {assignment} "
                  f"({len(corpus)} submissions: {len(with_kernel)} with the feedback kernel, "
                  f"{len(without_kernel)} without, two commands)", seconds)
    scores = gradebook_scores(course.root, assignment)
    # the graded notebooks of this run, before the second run replaces some of them
    graded_texts = {kind: _graded_text(course, assignment, kind) for kind in corpus}
    deferred = subprocess.run([sys.executable, "-m", "cnnbook.grading", "deferred", assignment],
                              cwd=course.root, capture_output=True, text=True,
                              env=course.environment, timeout=300)
    start = time.perf_counter()
    feedback = subprocess.run([sys.executable, "-m", "nbgrader", "generate_feedback",
                               assignment], cwd=course.root, capture_output=True,
                              text=True, env=course.environment, timeout=900)
    report_timing(f"nbgrader generate_feedback of the hostile corpus of {assignment}",
                  time.perf_counter() - start)
    submitted_after_first = _snapshot(course.root / "submitted")
    others = sorted(set(corpus) - set(RERUN[assignment]))
    # the second run without the feedback kernel: the grades must not change
    second, second_seconds = _autograde(course, assignment, "--force",
                                        f"--CourseDirectory.student_id_exclude={','.join(others)}",
                                        "--JudgeOutsideKernel.feedback_kernel=False")
    report_timing(f"second autograde run of {assignment}, {len(RERUN[assignment])} submissions "
                  "(--force, one command, no feedback kernel)", second_seconds)
    return {
        "assignment": corpus_module.ASSIGNMENTS[assignment],
        "course": course, "corpus": corpus, "first": first, "seconds": seconds,
        "scores": scores, "feedback": feedback, "second": second, "deferred": deferred,
        "graded_texts": graded_texts,
        "scores_again": gradebook_scores(course.root, assignment),
        "submitted_before": submitted_before, "submitted_after_first": submitted_after_first,
        "submitted_after": _snapshot(course.root / "submitted"),
        "solutions_before": solutions_before,
        "solutions_after": _snapshot(course.root / "solutions"),
        "source": read_notebook(course.source(assignment)),
    }


KINDS = sorted(corpus_module.KINDS)


def test_corpus_has_at_least_25_hostile_kinds():
    hostile = [name for name in KINDS if not name.startswith("good_")]
    assert len(hostile) >= 25, hostile


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_each_assignment_description_matches_its_notebooks(repo_root, assignment):
    """The description's grade ids against the source notebook's own metadata and order."""
    description = corpus_module.ASSIGNMENTS[assignment]
    source = read_notebook(repo_root / "solutions" / assignment / f"{assignment}.ipynb")
    cells = {nbgrader_metadata(cell).get("grade_id"): cell for cell in source["cells"]}
    order = list(cells)
    autograded_tests = [grade_id for grade_id, cell in cells.items()
                        if cell["cell_type"] == "code" and nbgrader_metadata(cell).get("grade")
                        and not nbgrader_metadata(cell).get("solution")]
    assert list(description.tests) == autograded_tests
    assert nbgrader_metadata(cells[description.setup_cell]).get("locked")
    answer_cells = {grade_id for grade_id, cell in cells.items()
                    if nbgrader_metadata(cell).get("solution") and cell["cell_type"] == "code"}
    partly_cell, old, _, failing = description.partly_correct_answer
    assert {description.bypassed_cell, description.early_answer_cell,
            description.late_answer_cell, partly_cell, *description.left_unanswered} <= (
        answer_cells)
    assert order.index(description.early_answer_cell) < order.index(
        description.late_answer_cell)
    assert f"def {description.bypassed_function}({description.parameters}):" in (
        source_of(cells[description.bypassed_cell]).replace('"', "'"))
    assert old in source_of(cells[partly_cell])
    tests = set(description.tests)
    assert {*description.need_bypassed, *failing, *description.needs_models,
            *description.fail_unanswered} <= tests
    assert description.bypassed_cell not in description.left_unanswered
    assert partly_cell not in description.left_unanswered


def _graded_text(course: Course, assignment: str, student: str) -> str:
    path = course.root / "autograded" / student / assignment / f"{assignment}.ipynb"
    return path.read_text() if path.is_file() else ""


def test_architectures_batch_leaves_out_only_the_graders_own_walls():
    # both assignments are judged outside the kernel: they leave out only the roads around source
    # rules, which meet the same walls as kinds they keep
    assert corpus_module.kinds_of("sizing") == sorted(set(KINDS) - set(corpus_module.KERNEL_ONLY))
    assert {"post_run_cell_hook", "dunder_import"} <= set(corpus_module.kinds_of("sizing"))
    architectures = corpus_module.kinds_of("architectures")
    skipped = set(KINDS) - set(architectures)
    # and architectures leaves out the grader's own walls and nbgrader's handling of a
    # notebook's structure, graded in sizing's batch
    assert skipped == {*corpus_module.ARCHITECTURES.graded_on_sizing_only,
                       *corpus_module.KERNEL_ONLY}
    assert set(RERUN["architectures"]) <= set(architectures)
    # what depends on the assignment stays: good, honest and edited notebooks, a dying kernel,
    # the answers that reach for reference code or Keras, and what only the judge stops
    kept = {"good_reference", "good_partial", "good_honest_idioms", "tests_edited_to_pass",
            "syntax_error", "os_exit", "memory_bomb",
            "shadowing_cnnbook_folder", "patched_keras", "dunder_import", "keras_lookup_table",
            # what only the judge stops in this assignment's answers (the input history shows
            # no hidden test under the judge whatever the assignment: sizing grades it)
            "post_run_cell_hook", "lying_values", "keras_through_module_table",
            "reads_hidden_expected"}
    assert set(corpus_module.JUDGED_ONLY) - kept == {"prints_input_history"}
    assert kept <= set(architectures), sorted(kept - set(architectures))


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_gets_its_expected_score_and_reason(graded, kind):
    if kind not in graded["corpus"]:  # left out of this batch on purpose, and only then
        assert kind not in corpus_module.kinds_of(graded["assignment"].name), kind
        assert kind not in graded["scores"], kind
        return
    expected = graded["corpus"][kind].expected
    source, assignment = graded["source"], graded["assignment"]
    result = graded["scores"][kind]
    assert result["code_score"] == points_of(source, *expected.passing), (
        kind, {name: grade for name, grade in result["grades"].items()})
    for grade_id, (score, auto_score, _, needs_manual) in result["grades"].items():
        if not expected.graded:
            assert not score, (kind, grade_id, "an unreadable submission earns nothing")
        elif grade_id in expected.deferred:
            assert auto_score is None and needs_manual, (kind, grade_id, "must wait for a human")
        elif grade_id in expected.passing:
            assert score == points_of(source, grade_id), (kind, grade_id)
        elif grade_id in assignment.tests:
            assert score == 0 and not needs_manual, (kind, grade_id, "a failed test scores 0")
    text = graded["graded_texts"][kind]
    assert bool(text) == expected.graded, (kind, "graded notebook present?")
    if expected.reason:
        assert expected.reason in text, (kind, expected.reason)
    if expected.log:
        assert expected.log in graded["first"].stderr + graded["first"].stdout, kind
    if expected.not_in_log:
        assert expected.not_in_log not in graded["first"].stderr + graded["first"].stdout, kind
    if expected.max_graded_bytes:
        assert len(text.encode()) <= expected.max_graded_bytes, (kind, len(text.encode()))
    folder = graded["course"].root / "autograded" / kind / assignment.name
    for name in expected.absent:
        assert not os.path.lexists(folder / name), (kind, name, "reached the grading copy")


def _outputs_text(graded: dict, student: str) -> str:
    """The outputs of the first run's graded notebook of ``student``, as JSON text."""
    text = graded["graded_texts"].get(student, "")
    if not text:
        return ""
    return json.dumps([cell.get("outputs", []) for cell in json.loads(text)["cells"]])


@pytest.mark.slow
def test_no_attack_reached_outside_its_sandbox(graded):
    for kind in graded["corpus"]:
        outputs = _outputs_text(graded, kind)
        for marker in ("NETWORK REACHED", "SHADOWED", "SOLUTIONS READ", "TEST IMAGES SEEN: 10000"):
            assert marker not in outputs, (kind, marker)
    if "network_connection" in graded["corpus"]:
        assert "no network: gaierror" in _outputs_text(graded, "network_connection")
    else:  # graded in sizing's batch
        assert "network_connection" in graded["assignment"].graded_on_sizing_only
    # what writes_elsewhere and reads_solutions aimed at is unchanged (the gradebook and
    # submitted/ are checked by the tests below)
    assert graded["solutions_after"] == graded["solutions_before"]


@pytest.mark.slow
def test_submitted_files_are_byte_identical_after_grading(graded):
    assert graded["submitted_after_first"] == graded["submitted_before"]
    assert graded["submitted_after"] == graded["submitted_before"]


@pytest.mark.slow
def test_gradebook_holds_every_submission_and_good_scores_are_unchanged(graded):
    scores, source, assignment = graded["scores"], graded["source"], graded["assignment"]
    assert sorted(scores) == corpus_module.kinds_of(graded["assignment"].name)
    expected_grade_ids = {name for name in scores["good_reference"]["grades"]}
    for kind in scores:
        assert set(scores[kind]["grades"]) == expected_grade_ids, kind
    # every test but those that need the trained models the corpus does not submit
    reference_points = points_of(source, *assignment.tests) - points_of(
        source, *assignment.needs_models)
    assert scores["good_reference"]["code_score"] == reference_points
    assert scores["good_partial"]["code_score"] == reference_points - points_of(
        source, *assignment.partly_correct_answer[3])


@pytest.mark.slow
def test_command_exits_non_zero_with_a_summary_of_deferred_cells(graded):
    first, name = graded["first"], graded["assignment"].name
    assert first.returncode != 0
    if any(submission.expected.deferred for submission in graded["corpus"].values()):
        assert "were NOT graded automatically" in first.stderr
    else:  # judged outside the kernel: a stopped kernel defers nothing
        assert graded["assignment"].judged
        assert "were NOT graded automatically" not in first.stderr
    for kind in graded["corpus"]:
        if not graded["corpus"][kind].expected.graded:
            assert f"for student '{kind}'" in first.stderr + first.stdout, kind
        for grade_id in graded["corpus"][kind].expected.deferred:
            assert f"{kind}/{name}/{name} {grade_id}" in first.stderr, (kind, grade_id)


def test_kinds_graded_with_the_feedback_kernel_exist_and_include_the_reruns():
    assert FEEDBACK_KERNEL_KINDS <= set(KINDS), sorted(FEEDBACK_KERNEL_KINDS - set(KINDS))
    for assignment, kinds in RERUN.items():
        # the second run (without the kernel) regrades kinds the first graded with it
        assert set(kinds) <= FEEDBACK_KERNEL_KINDS, (assignment, kinds)
    assert set(KINDS) - FEEDBACK_KERNEL_KINDS, "some kinds are graded without the kernel"


@pytest.mark.slow
def test_second_autograde_run_gives_identical_grades(graded):
    assert "Skipping existing" not in graded["second"].stderr  # --force graded them again
    for student in RERUN[graded["assignment"].name]:
        assert f"Removing existing assignment: autograded/{student}/" in (
            graded["second"].stderr.replace(str(graded["course"].root) + "/", "")), student
        assert graded["scores_again"][student] == graded["scores"][student], student
        # without the feedback kernel, no cell but the failed tests' verdicts has an output
        notebook = json.loads(_graded_text(graded["course"], graded["assignment"].name, student))
        with_outputs = [cell for cell in notebook["cells"] if cell.get("outputs")]
        assert all(output.get("ename") == "TestFailed" for cell in with_outputs
                   for output in cell["outputs"]), (student, with_outputs)
    assert any(cell.get("outputs") for cell in json.loads(graded["graded_texts"][
        "good_reference"])["cells"]), "the first run's kernel gave the student their outputs"
    assert graded["scores_again"] == graded["scores"], "a submission not graded again changed"


@pytest.mark.slow
def test_deferred_command_lists_what_waits_for_an_instructor(graded):
    """``python -m cnnbook.grading deferred``: every deferred test cell, and the test cells of
    notebooks nbgrader could not read (no automatic score either); nothing else."""
    corpus, name = graded["corpus"], graded["assignment"].name
    listed = {tuple(line.split(" ")) for line in graded["deferred"].stdout.splitlines()
              if line.count("/") == 2}
    expected = {(f"{kind}/{name}/{name}", grade_id) for kind, submission in corpus.items()
                for grade_id in submission.expected.deferred}
    assert expected <= listed, sorted(expected - listed)
    unreadable = {kind for kind, submission in corpus.items() if not submission.expected.graded}
    assert {path.split("/")[0] for path, _ in listed - expected} <= unreadable, sorted(listed)
    assert graded["deferred"].returncode == (2 if listed else 0), graded["deferred"].stderr


@pytest.mark.slow
def test_batch_finishes_within_its_bound(graded):
    assert graded["seconds"] < BATCH_BOUND_S


def _page_text(path: Path) -> str:
    """A feedback page as the student reads it: tags removed, entities decoded (syntax
    highlighting splits code into spans, so the raw HTML would hide a leak)."""
    text = re.sub(r"<[^>]+>", "", path.read_text())
    return html.unescape(text)


@pytest.mark.slow
def test_feedback_shows_no_hidden_test_line(graded):
    assert graded["feedback"].returncode == 0, graded["feedback"].stderr[-3000:]
    course, source = graded["course"], graded["source"]
    hidden_only = _hidden_test_lines(source)
    assert len(hidden_only) > 10
    pages = sorted((course.root / "feedback").rglob("*.html"))
    assert len(pages) >= len([k for k in graded["corpus"] if graded["corpus"][k].expected.graded])
    for page in pages:
        lines = {line.strip() for line in _page_text(page).splitlines()}
        # a line the student wrote is theirs to see (the Keras table's `continue`)
        submitted = graded["corpus"].get(page.parent.parent.name)
        leaked = sorted(hidden_only & lines - _student_lines(submitted))
        assert not leaked, f"{page} shows hidden tests: {leaked[:3]}"


@pytest.mark.slow
def test_feedback_holds_only_the_rendered_notebook(graded):
    """generate_feedback copies a grading folder's other files: none may come from a kernel
    (links to the solutions or the gradebook, /dev/zero, a FIFO)."""
    name = graded["assignment"].name
    for kind, submission in graded["corpus"].items():
        folder = graded["course"].root / "feedback" / kind / name
        if submission.expected.graded:
            entries = sorted(path.name for path in folder.iterdir())
            assert entries == [f"{name}.html"], (kind, entries)
            assert not any(path.is_symlink() for path in folder.iterdir()), kind


def _student_lines(submission) -> set[str]:
    """The stripped lines of a submission's own notebook."""
    notebook = getattr(submission, "notebook", None)
    if not isinstance(notebook, dict):
        return set()
    return {line.strip() for cell in notebook["cells"] for line in source_of(cell).splitlines()}


def _hidden_test_lines(source: dict) -> set[str]:
    """Lines of the source that appear only inside hidden-test regions (8 characters or more):
    not in an answer, a visible test or anywhere else a feedback page may legitimately show."""
    hidden, elsewhere = set(), set()
    for cell in source["cells"]:
        inside = False
        for line in source_of(cell).splitlines():
            stripped = line.strip()
            if stripped == "### BEGIN HIDDEN TESTS":
                inside = True
            elif stripped == "### END HIDDEN TESTS":
                inside = False
            else:
                (hidden if inside else elsewhere).add(stripped)
    return {line for line in hidden - elsewhere if len(line) >= 8}
