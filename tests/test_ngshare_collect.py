"""cnnbook.grading.ngshare_collect: the course's collect when the exchange is ngshare. Each
submission is ngshare's file list (paths and base64 contents, as a student's server uploaded
them); the collect writes it under that student's folder only, or leaves it out, and goes on
with the others. ngshare_exchange's own collect is the oracle of what goes wrong without it."""

from __future__ import annotations

import base64
import importlib
import logging

import pytest


def _entry(path: str, content: bytes) -> dict:
    return {"path": path, "content": base64.encodebytes(content).decode()}


@pytest.fixture
def ngshare_collect(monkeypatch):
    """The module, imported with a user name set (ngshare_exchange reads it at import)."""
    monkeypatch.setenv("JUPYTERHUB_USER", "instructor")
    return importlib.import_module("cnnbook.grading.ngshare_collect")


def _collector(module, tmp_path):
    collect = module.NgshareCollect.__new__(module.NgshareCollect)
    collect.log = logging.getLogger("ngshare-collect-test")
    collect.max_submission_mib = 1
    return collect


def test_files_are_written_under_the_student_folder_and_ngshare_s_time_wins(
        ngshare_collect, tmp_path):
    collect = _collector(ngshare_collect, tmp_path)
    dest = tmp_path / "submitted" / "alice" / "sizing"
    dest.parent.mkdir(parents=True)
    collect.do_copy([_entry("sizing.ipynb", b"{}"), _entry("data/w.keras", b"PK"),
                     _entry("timestamp.txt", b"2000-01-01 00:00:00.000000 UTC"),
                     _entry("timestamp.txt", b"2026-12-06 00:10:00.000000 UTC")], str(dest))
    assert (dest / "sizing.ipynb").read_bytes() == b"{}"
    assert (dest / "data" / "w.keras").read_bytes() == b"PK"
    assert (dest / "timestamp.txt").read_text() == "2026-12-06 00:10:00.000000 UTC"
    assert not dest.with_name("sizing.collecting").exists()


@pytest.mark.parametrize("path", ["../bob/sizing.ipynb", "/etc/passwd", "a/../../x", "a/..", ""])
def test_a_path_out_of_the_submission_leaves_that_submission_out(ngshare_collect, tmp_path,
                                                                  caplog, path):
    collect = _collector(ngshare_collect, tmp_path)
    dest = tmp_path / "submitted" / "mallory" / "sizing"
    dest.parent.mkdir(parents=True)
    with caplog.at_level(logging.ERROR):
        collect.do_copy([_entry("sizing.ipynb", b"{}"), _entry(path, b"x")], str(dest))
    assert not dest.exists() and not dest.with_name("sizing.collecting").exists()
    assert "Left out the submission" in caplog.text and "would leave the submission" in caplog.text
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["mallory", "submitted"]


def test_too_much_or_undecodable_content_is_left_out(ngshare_collect, tmp_path, caplog):
    collect = _collector(ngshare_collect, tmp_path)
    big = tmp_path / "submitted" / "big" / "sizing"
    big.parent.mkdir(parents=True)
    collect.do_copy([_entry("a.bin", b"x" * 2**20), _entry("b.bin", b"y")], str(big))
    assert not big.exists() and "more than 1 MiB" in caplog.text
    broken = tmp_path / "submitted" / "broken" / "sizing"
    broken.parent.mkdir(parents=True)
    collect.do_copy([{"path": "a.ipynb", "content": "%%%not base64"}], str(broken))
    assert not broken.exists()


def test_a_folder_that_exists_where_the_command_runs_breaks_nothing(ngshare_collect, tmp_path,
                                                                     monkeypatch):
    """ngshare_exchange's own decode_dir looks for a file's folder in the current folder: a
    submission holding ``solutions/x`` where the instructor's course has ``solutions/`` makes it
    fail (and stop the class); the course's collect writes it under the student's folder."""
    from ngshare_exchange import ExchangeCollect

    course = tmp_path / "course"
    (course / "solutions").mkdir(parents=True)
    monkeypatch.chdir(course)
    files = [_entry("sizing.ipynb", b"{}"), _entry("solutions/x.txt", b"mine")]
    stock = ExchangeCollect.__new__(ExchangeCollect)
    stock.log = logging.getLogger("stock")
    with pytest.raises(FileNotFoundError):
        stock.decode_dir(files, str(course / "submitted" / "eve" / "sizing"))
    dest = course / "submitted" / "eve2" / "sizing"
    dest.parent.mkdir(parents=True)
    _collector(ngshare_collect, tmp_path).do_copy(files, str(dest))
    assert (dest / "solutions" / "x.txt").read_bytes() == b"mine"
    assert not (course / "solutions" / "x.txt").exists()


def test_submission_files_reads_paths_and_contents_in_order(ngshare_collect):
    files = ngshare_collect.submission_files(
        [_entry("a.ipynb", b"1"), _entry("d/b.txt", b"22")], limit_bytes=3)
    assert [(str(path), content) for path, content in files] == [("a.ipynb", b"1"),
                                                                 ("d/b.txt", b"22")]
    with pytest.raises(ngshare_collect.UnsafeSubmission, match="MiB"):
        ngshare_collect.submission_files([_entry("a", b"1234")], limit_bytes=3)


@pytest.mark.parametrize("path", ["x\x00y", "a\nb.ipynb", "esc\x1b[2J"])
def test_a_control_character_in_a_path_leaves_that_submission_out(ngshare_collect, tmp_path,
                                                                   caplog, path):
    """ngshare stores any path string: a NUL byte made open() raise ValueError, which no
    OSError handler caught."""
    dest = tmp_path / "submitted" / "mallory" / "sizing"
    dest.parent.mkdir(parents=True)
    _collector(ngshare_collect, tmp_path).do_copy([_entry(path, b"x")], str(dest))
    assert not dest.exists() and "control character" in caplog.text


def test_a_file_where_the_submission_has_a_folder_or_too_many_files_is_left_out(
        ngshare_collect, tmp_path, caplog):
    collect = _collector(ngshare_collect, tmp_path)
    clash = tmp_path / "submitted" / "clash" / "sizing"
    clash.parent.mkdir(parents=True)
    collect.do_copy([_entry("a", b"1"), _entry("a/b", b"2")], str(clash))
    assert not clash.exists() and "Left out the submission" in caplog.text
    many = tmp_path / "submitted" / "many" / "sizing"
    many.parent.mkdir(parents=True)
    collect.max_files = 3
    collect.do_copy([_entry(f"f{index}", b"") for index in range(4)], str(many))
    assert not many.exists() and "more than 3 files" in caplog.text


def _class_collector(module, root, records, submissions, update=True):
    """NgshareCollect over ``records`` (ngshare's latest submission per student) whose files
    ``_get_submission`` returns from ``submissions`` (None: ngshare sent nothing)."""
    from nbgrader.coursedir import CourseDirectory

    collect = _collector(module, root)
    collect.coursedir = CourseDirectory(root=str(root), course_id="cnnbook",
                                        assignment_id="sizing")
    collect.src_records, collect.update = records, update
    collect._get_submission = lambda course, assignment, student: (
        None if submissions.get(student) is None else {"files": submissions[student]})
    return collect


def test_one_student_s_failure_stays_theirs_and_a_rejected_update_keeps_the_last_one(
        ngshare_collect, tmp_path, caplog):
    import datetime

    def record(student, hour):
        return {"student_id": student, "timestamp": datetime.datetime(2026, 12, 6, hour)}

    def files(text, hour):
        return [_entry("sizing.ipynb", text.encode()),
                _entry("timestamp.txt", f"2026-12-06 {hour:02d}:00:00.000000 UTC".encode())]

    first = _class_collector(ngshare_collect, tmp_path, [record("alice", 1), record("bob", 1)],
                             {"alice": files("alice 1", 1), "bob": files("bob 1", 1)})
    first.copy_files()
    submitted = tmp_path / "submitted"
    assert (submitted / "bob" / "sizing" / "sizing.ipynb").read_text() == "bob 1"
    # next collect: alice's newer submission cannot be written, bob's id could be a path,
    # carol's was not sent, dave's is fine; each one is handled alone
    second = _class_collector(
        ngshare_collect, tmp_path,
        [record("alice", 2), record("../bob", 2), record("carol", 2), record("dave", 2)],
        {"alice": [_entry("x\x00", b"")], "../bob": files("evil", 2), "dave": files("dave", 2)})
    second.copy_files()
    assert (submitted / "alice" / "sizing" / "sizing.ipynb").read_text() == "alice 1"
    assert (submitted / "dave" / "sizing" / "sizing.ipynb").read_text() == "dave"
    assert not (submitted / "carol").exists() and not (tmp_path / "bob").exists()
    assert "could be a path" in caplog.text and "ngshare did not send it" in caplog.text
    # a newer one that can be written replaces the last one; an older or equal one does not
    _class_collector(ngshare_collect, tmp_path, [record("alice", 3)],
                     {"alice": files("alice 3", 3)}).copy_files()
    assert (submitted / "alice" / "sizing" / "sizing.ipynb").read_text() == "alice 3"
    _class_collector(ngshare_collect, tmp_path, [record("alice", 3)],
                     {"alice": files("alice again", 3)}).copy_files()
    assert (submitted / "alice" / "sizing" / "sizing.ipynb").read_text() == "alice 3"
    assert sorted(path.name for path in (submitted / "alice").iterdir()) == ["sizing"]
