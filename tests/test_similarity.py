"""cnnbook.grading.similarity (issue 26.6): a planted copy (renamed variables, new comments) is
reported, an independent solution and the release's own code are not, hostile notebooks are left
out with their reason, the report's HTML shows student code inert, and no grade changes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cnnbook.grading.similarity import answer_cell_ids, answer_code, similar_pairs

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "solutions" / "sizing" / "sizing.ipynb"
RELEASE = ROOT / "exercises" / "sizing" / "sizing.ipynb"
RENAMED = {"padded_size": "total_width", "keras_size": "n_out", "conv_size": "side",
           "pool_size": "half", "last_row_read": "end_row", "images": "inp", "scores": "logits"}
INJECTION = "# </script><script>alert('copied')</script>"

INDEPENDENT = {  # carol's own answers: the same results, written another way
    "output_size": '''def output_size(input_size, kernel_size, stride=1, padding="valid"):
    """Number of positions of a window of `kernel_size` sliding with `stride` over
    `input_size` positions, with Keras' "valid"/"same" padding or `padding` zeros on each side."""
    pads = {"valid": 0}
    if padding == "same":
        return -(-input_size // stride)
    p = pads.get(padding, padding)
    if type(p) is not int or p < 0:
        raise ValueError("bad padding: " + repr(padding))
    count, start = 0, 0
    while start + kernel_size <= input_size + 2 * p:
        count, start = count + 1, start + stride
    if count == 0:
        raise ValueError("kernel larger than the padded input")
    return count''',
    "toy_shapes": '''def toy_shape_table(image_size=32, filters=12, classes=10):
    """Output shape of each layer of the toy network (without the batch axis)."""
    half = image_size // 2
    table = dict(input=(image_size, image_size, 3))
    table["conv"] = table["relu"] = (image_size, image_size, filters)
    table["pool"] = (half, half, filters)
    table["flatten"] = (half * half * filters,)
    table["fc"] = (classes,)
    return table


toy_shapes = toy_shape_table()
toy_shapes''',
    "alexnet_answers": '''def valid_conv_numbers(input_size, kernel_size=11, stride=4, filters=96):
    """Output shape, exact formula value, Keras' output size and unread rows of a "valid"
    convolution with `filters` square kernels on an input_size x input_size input."""
    exact = (input_size - kernel_size) / stride + 1
    whole = int(exact)
    leftover = input_size - (kernel_size + stride * (whole - 1))
    return dict(output_shape=(whole, whole, filters), exact=exact, keras_size=whole,
                unused_rows=leftover)


first = valid_conv_numbers(227)
alexnet_conv1_shape = first["output_shape"]
second = valid_conv_numbers(224)
alexnet_224_exact, alexnet_224_keras_size = second["exact"], second["keras_size"]
alexnet_224_unused_rows = second["unused_rows"]''',
    "build_toy_network": '''def build_toy_network():
    """INPUT 32x32x3 -> CONV 12 filters 3x3 "same" -> RELU -> POOL 2x2 -> FLATTEN -> FC 10."""
    net = keras.Sequential(name="toy_network")
    net.add(keras.Input((32, 32, 3), name="input"))
    for layer in (keras.layers.Conv2D(12, (3, 3), padding="same", name="conv"),
                  keras.layers.Activation("relu", name="relu"),
                  keras.layers.MaxPool2D(2, name="pool"), keras.layers.Flatten(name="flatten"),
                  keras.layers.Dense(10, name="fc")):
        net.add(layer)
    return net''',
}


def _notebook(path: Path) -> dict:
    return json.loads(path.read_text())


def _with_answers(answers: dict[str, str]) -> dict:
    notebook = _notebook(RELEASE)
    for cell in notebook["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
    return notebook


def _reference_answers() -> dict[str, str]:
    ids = answer_cell_ids(SOURCE)
    return {cell["metadata"]["nbgrader"]["grade_id"]: "".join(cell["source"])
            for cell in _notebook(SOURCE)["cells"]
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") in ids}


def _disguised(code: str) -> str:
    """A copy as a student would disguise it: names changed, comments rewritten, blank lines."""
    for old, new in RENAMED.items():
        code = re.sub(rf"\b{old}\b", new, code)
    code = re.sub(r"#.*", "# my own work", code)
    return f"{INJECTION}\n" + code.replace("\n    return", "\n\n    return")


def test_answer_cells_are_the_sources_solution_cells_read_from_a_submission(tmp_path):
    assert answer_cell_ids(SOURCE) == ["output_size", "toy_shapes", "alexnet_answers",
                                       "build_toy_network"]
    path = tmp_path / "sizing.ipynb"
    notebook = _with_answers({"output_size": "def output_size(*a):\n    return 1\n"})
    notebook["cells"].append({"cell_type": "code", "source": "extra = 1",
                              "metadata": {}, "outputs": [], "execution_count": None})
    path.write_text(json.dumps(notebook))
    code = answer_code(path, answer_cell_ids(SOURCE))
    assert code.startswith("def output_size(*a):\n    return 1\n")
    assert "extra = 1" not in code and "raise NotImplementedError()" in code  # others as given


@pytest.mark.parametrize("make, reason", [
    (lambda path: path.symlink_to(SOURCE), "a link or not a regular file"),
    (lambda path: os.mkfifo(path), "a link or not a regular file"),
    (lambda path: path.write_text("{not json"), "not valid JSON"),
    (lambda path: path.write_text('{"cells": "none"}'), "not a notebook"),
    (lambda path: path.write_text("[" * 100_000 + "]" * 100_000), "not valid JSON"),
    (lambda path: path.write_bytes(b" " * (21 * 2**20)), "larger than"),
])
def test_a_hostile_notebook_is_refused_with_its_reason(tmp_path, make, reason):
    path = tmp_path / "sizing.ipynb"
    make(path)
    with pytest.raises(ValueError, match=reason):
        answer_code(path, ["output_size"])


def test_a_disguised_copy_is_found_and_independent_work_is_not():
    reference = _reference_answers()
    ids = answer_cell_ids(SOURCE)
    given = answer_code(RELEASE, ids)
    alice = "\n\n".join(reference[grade_id] for grade_id in ids)
    answers = {"alice": alice, "bob": _disguised(alice),
               "carol": "\n\n".join(INDEPENDENT[grade_id] for grade_id in ids)}
    pairs = similar_pairs(answers, given, threshold=0.5)
    assert [(pair.first, pair.second) for pair in pairs] in ([("alice", "bob")],
                                                             [("bob", "alice")])
    assert pairs[0].similarity >= 0.9 and pairs[0].common_tokens > 100
    # the guide quotes the independent solution's similarity: about 13%, far below any threshold
    low = similar_pairs(answers, given, threshold=0.01)
    assert all(pair.similarity < 0.2 for pair in low if "carol" in (pair.first, pair.second))
    # the release's code alone is in everyone's notebook: it is never a reason to be listed
    assert similar_pairs({"dave": given, "erin": given + "\nx = 1\n"}, given, 0.5) == []


def test_the_command_reports_on_a_class_and_changes_no_grade(tmp_path, monkeypatch):
    # nbgrader creates a gradebook by running `alembic`, which it finds on PATH
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    course = tmp_path / "course"
    for folder, notebook in (("solutions", SOURCE), ("exercises", RELEASE)):
        (course / folder / "sizing").mkdir(parents=True)
        shutil.copy2(notebook, course / folder / "sizing" / "sizing.ipynb")
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'cnnbook'\n"
        "c.CourseDirectory.source_directory = 'solutions'\n"
        "c.CourseDirectory.release_directory = 'exercises'\n")
    reference = _reference_answers()
    submissions = {
        "alice": _with_answers(reference),
        "bob": _with_answers({key: _disguised(code) for key, code in reference.items()}),
        "carol": _with_answers(INDEPENDENT),
        "dave": _notebook(RELEASE),
    }
    for student, notebook in submissions.items():
        folder = course / "submitted" / student / "sizing"
        folder.mkdir(parents=True)
        (folder / "sizing.ipynb").write_text(json.dumps(notebook))
    linked = course / "submitted" / "eve" / "sizing"
    linked.mkdir(parents=True)
    (linked / "sizing.ipynb").symlink_to(course / "submitted" / "alice" / "sizing" / "sizing.ipynb")
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "cnnbook") as gradebook:
        gradebook.add_assignment("sizing")
        for student in ("alice", "bob", "carol"):
            gradebook.add_student(student)
    before = (course / "gradebook.db").read_bytes()
    (course / "similarity").mkdir()
    (course / "similarity" / "sizing-same-function.json").write_text('[["alice", "carol"]]')
    done = subprocess.run([sys.executable, "-m", "cnnbook.grading", "similarity", "sizing"],
                          cwd=course, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    output = done.stdout
    assert "answer code of 3 student(s) compared" in output
    assert re.search(r"(alice and bob|bob and alice): 9\d% of", output) or "100% of" in output
    assert "carol and" not in output and "and carol:" not in output
    assert "left out dave: no answer code beyond what the release gives" in output
    assert "left out eve: the submitted notebook is a link or not a regular file" in output
    assert "sizing: the networks of alice, carol compute the same function" in output
    html = (course / "similarity" / "sizing.html").read_text()
    assert "alice" in html and "bob" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html  # shown, never run
    assert (course / "gradebook.db").read_bytes() == before  # a report, never a grade
