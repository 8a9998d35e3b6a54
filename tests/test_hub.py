"""The course on a real JupyterHub, and what its deployment files promise (deploy/README.md).

Fast tests read deploy/: the image's pins agree with the tested environment, the Zero to
JupyterHub values match the chart's schema, the hub configuration loads in both modes.

Slow tests build and install things:

* the cnnbook wheel that the course image installs holds the package and its data, and nothing
  of solutions/ (no file, no marker, no solution or hidden-test code);
* a real JupyterHub process on 127.0.0.1 (deploy/jupyterhub_config.py in demo mode, as
  ``make hub`` runs it): users and the instructors group are created through the REST API; the
  instructor releases ``sizing`` through the exchange with the formgrader's API; each student's
  server starts, fetches the assignment, completes it (one from the solution source, one with
  part 1 only) in a kernel of that server (REST + websocket), saves and submits it; the
  instructor collects, autogrades (with the course's nbgrader_config.py, so its grading sandbox
  when configured) and generates and releases feedback; the students fetch their feedback. The
  expected scores come from the points in the source notebook. Every process of the run is
  ended afterwards, even on failure.

Timings go to the run's summary (``report_timing``).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from hub_client import Hub, ProcessWatch, UserServer, cell_errors, load_demo_module
from nbgrader_course import (
    BLOCK_MARKERS,
    auto_points,
    grade_cells,
    gradebook_scores,
    nbgrader_metadata,
    points_of,
    read_notebook,
    source_of,
)

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
COURSE_ID = "cnnbook"
ASSIGNMENT = "sizing"
INSTRUCTOR = "instructor"
FULL_STUDENT, PARTIAL_STUDENT = "student1", "student2"
PARTIAL_ANSWERS = ("output_size",)
"""The partial student answers part 1 only: the solution cell ``output_size``."""
MARKERS = [marker for pair in BLOCK_MARKERS.values() for marker in pair]


def requirement_pins(path: Path) -> dict[str, str]:
    """``{normalised name: version}`` of the ``name==version`` lines of a requirements file."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(3)
    return pins


def protected_blocks(notebook: dict) -> list[list[str]]:
    """The solution and hidden-test blocks of a source notebook, each as its stripped non-blank
    lines (a manually graded markdown answer is one block)."""
    blocks = []
    for cell in notebook["cells"]:
        lines = [line.strip() for line in source_of(cell).splitlines()]
        if cell["cell_type"] == "markdown" and nbgrader_metadata(cell).get("solution"):
            blocks.append([line for line in lines if line])
            continue
        current = None
        for line in lines:
            if line in (begin for begin, _ in BLOCK_MARKERS.values()):
                current = []
            elif line in (end for _, end in BLOCK_MARKERS.values()):
                blocks.append(current)
                current = None
            elif current is not None and line:
                current.append(line)
    return [block for block in blocks if block]


def contains_block(lines: list[str], block: list[str]) -> bool:
    """Whether the stripped, non-blank ``lines`` hold ``block`` as consecutive lines."""
    size = len(block)
    return any(lines[start:start + size] == block for start in range(len(lines) - size + 1))


# --- Fast: what the deployment files say -------------------------------------------------------


def test_image_pins_agree_with_the_repository_and_the_tested_environment(repo_root):
    image = requirement_pins(DEPLOY / "image" / "requirements.txt")
    repository = requirement_pins(repo_root / "requirements.txt")
    for needed in ("tensorflow", "keras", "nbgrader", "jupyterlab", "jupyterhub", "nbgitpuller",
                   "jupytext", "ipykernel"):
        assert needed in image, f"the course image must pin {needed}"
    for name, version in image.items():
        if name in repository:
            assert version == repository[name], (
                f"{name}: the image pins {version}, requirements.txt {repository[name]}")
        else:
            installed = importlib.metadata.version(name)
            assert version == installed, (
                f"{name}: the image pins {version}, the tests ran with {installed}")
    for tool in ("jupyter-book", "pytest", "playwright", "sphinx"):
        assert tool not in image, f"the image does not need {tool}"
    text = "\n".join(line.split("#")[0] for line in
                     (DEPLOY / "image" / "requirements.txt").read_text().splitlines())
    assert not re.search(r"^\s*-e\b|^\s*\.\s*$|solutions|cnnbook", text, re.MULTILINE), (
        "the image installs cnnbook from its wheel, never the checkout")
    dockerfile = (DEPLOY / "image" / "Dockerfile").read_text()
    assert "cnnbook-*.whl" in dockerfile and "COPY jupyter/" in dockerfile
    copied = re.findall(r"^COPY\s+(\S+)", dockerfile, re.MULTILINE)
    assert all(not source.startswith("..") and "solutions" not in source
               for source in copied), copied


def test_z2jh_values_match_the_chart_schema_and_ask_for_the_gpu_pool():
    import jsonschema

    schema = yaml.safe_load((DEPLOY / "z2jh" / "values.schema.yaml").read_text())

    def without_required(node):
        # a values file only overrides the chart's defaults, which hold the required keys
        if isinstance(node, dict):
            return {key: without_required(value) for key, value in node.items()
                    if key != "required"}
        if isinstance(node, list):
            return [without_required(value) for value in node]
        return node

    validator = jsonschema.Draft7Validator(without_required(schema))
    values = yaml.safe_load((DEPLOY / "z2jh" / "values.yaml").read_text())
    errors = [f"{'.'.join(map(str, error.path))}: {error.message}"
              for error in validator.iter_errors(values)]
    assert not errors, errors
    misspelt = json.loads(json.dumps(values))
    misspelt["singleuser"]["profilelist"] = misspelt["singleuser"].pop("profileList")
    assert list(validator.iter_errors(misspelt)), "the schema must reject an unknown key"

    profiles = {profile["slug"]: profile for profile in values["singleuser"]["profileList"]}
    gpu = profiles["gpu"]["kubespawner_override"]
    assert gpu["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    assert any(toleration["key"] == "nvidia.com/gpu" for toleration in gpu["tolerations"])
    assert gpu["node_selector"]
    assert "kubespawner_override" not in profiles["cpu"]
    assert values["singleuser"]["memory"]["limit"] and values["singleuser"]["cpu"]["limit"]
    assert values["singleuser"]["extraEnv"]["CNNBOOK_EXCHANGE_KIND"] == "ngshare"
    assert "ngshare" in values["hub"]["services"]
    assert values["cull"]["enabled"] is True
    image_name = values["singleuser"]["image"]["name"]
    assert image_name.endswith("/cnnbook-hub"), image_name


@pytest.mark.parametrize("mode", ["demo", "docker"])
def test_hub_configuration_loads_with_profiles_culler_and_roles(tmp_path, monkeypatch, mode):
    from traitlets.config.loader import PyFileConfigLoader

    monkeypatch.setenv("CNNBOOK_HUB_MODE", mode)
    monkeypatch.setenv("CNNBOOK_HUB_STATE", str(tmp_path))
    config = PyFileConfigLoader("jupyterhub_config.py", str(DEPLOY)).load_config()
    assert (tmp_path / "exchange").stat().st_mode & 0o1777 == 0o1777
    culler = next(service for service in config.JupyterHub.services
                  if service["name"] == "idle-culler")
    assert "jupyterhub_idle_culler" in culler["command"]
    expected_spawner = {"demo": "simple", "docker": "dockerspawner.DockerSpawner"}[mode]
    assert config.JupyterHub.spawner_class == expected_spawner

    class Spawner:  # the attributes the hooks set on a real spawner
        environment, extra_host_config, mem_limit, cpu_limit = {}, {}, None, None

    spawner = Spawner()
    config.Spawner.apply_user_options(spawner, {"profile": "cpu"})
    assert (spawner.mem_limit, spawner.cpu_limit) == ("4G", 2.0)
    assert "device_requests" not in spawner.extra_host_config
    config.Spawner.apply_user_options(spawner, {"profile": "gpu"})
    assert (spawner.mem_limit, spawner.cpu_limit) == ("24G", 8.0)
    if mode == "docker":
        assert spawner.extra_host_config["device_requests"] == [
            {"count": 1, "capabilities": [["gpu"]]}]
    with pytest.raises(ValueError, match="profile must be one of"):
        config.Spawner.apply_user_options(spawner, {"profile": "tpu"})


# --- Slow: the image's environment -------------------------------------------------------------


@pytest.mark.slow
def test_course_wheel_installs_the_package_and_no_solution(repo_root, tmp_path, report_timing):
    """Build the wheel from a copy of the checkout (git's tracked and unignored files, as a
    fresh clone has them), as deploy/README.md says, and install it into a target folder."""
    start = time.perf_counter()
    checkout = tmp_path / "checkout"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo_root,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for relative in filter(None, listed):
        if (repo_root / relative).is_file():
            (checkout / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo_root / relative, checkout / relative)
    assert (checkout / "solutions").is_dir(), "the copy holds solutions/, as the repository does"
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "--wheel-dir", str(wheels), str(checkout)], check=True)
    (wheel,) = wheels.glob("cnnbook-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"cnnbook", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1]
                         + ".dist-info"}, top_level
    package = repo_root / "cnnbook"
    modules = {path.relative_to(repo_root).as_posix() for path in package.rglob("*.py")}
    assert "cnnbook/course/data.py" in modules  # every subpackage's modules, not only the root's
    data = {path.relative_to(repo_root).as_posix()
            for path in (package / "nets" / "published_data").glob("*.csv")}
    assert len(data) >= 5
    assert modules | data <= set(names), sorted((modules | data) - set(names))

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target",
                    str(site), str(wheel)], check=True)
    report_timing("hub image: cnnbook wheel built and installed", time.perf_counter() - start)

    installed = [path for path in site.rglob("*") if path.is_file()]
    assert not [path for path in installed if "solutions" in path.relative_to(site).parts]
    blocks = []
    for source in (repo_root / "solutions").glob("*/*.ipynb"):
        blocks += protected_blocks(read_notebook(source))
    assert len(blocks) > 20
    for path in installed:
        if path.suffix not in (".py", ".csv", ".txt", ".json", ".md", ".ipynb", "") \
                and "dist-info" not in str(path):
            continue
        text = path.read_text(errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        # a marker on a line of its own opens or closes a block (the grader's docstrings may
        # name the markers in prose)
        assert not set(MARKERS) & set(lines), f"{path} holds a solution or hidden-test block"
        leaked = [block for block in blocks if len(block) >= 2 and contains_block(lines, block)]
        assert not leaked, f"{path} holds solution or hidden-test code: {leaked[0][:3]}"

    # the installed package is the one imported, and it finds its data
    site_packages = Path(importlib.metadata.distribution("numpy").locate_file(""))
    probe = subprocess.run(
        [sys.executable, "-S", "-c",
         "import sys; sys.path[:0] = [sys.argv[1]]; sys.path.append(sys.argv[2]); "
         "import cnnbook, cnnbook.nets.published as p; print(cnnbook.__file__); "
         "print(','.join(sorted(p.available())))", str(site), str(site_packages)],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )
    module_file, available = probe.stdout.split()
    assert Path(module_file).is_relative_to(site)
    assert sorted(available.split(",")) == sorted(Path(name).stem for name in data)


# --- Slow: the course on a real hub ------------------------------------------------------------


def completed(notebook: dict, source: dict, answers: set[str] | None) -> dict:
    """``notebook`` (the fetched release) with the solution cells named in ``answers`` (all when
    None) written as the source's solution, without its markers: what a student would type."""
    solutions = {nbgrader_metadata(cell)["grade_id"]: cell for cell in source["cells"]
                 if nbgrader_metadata(cell).get("solution")}
    notebook = json.loads(json.dumps(notebook))
    for cell in notebook["cells"]:
        grade_id = nbgrader_metadata(cell).get("grade_id")
        if grade_id in solutions and (answers is None or grade_id in answers):
            lines = source_of(solutions[grade_id]).splitlines(keepends=True)
            cell["source"] = "".join(line for line in lines if line.strip() not in MARKERS)
    return notebook


def student_turn(server: UserServer, source: dict, answers: set[str] | None) -> dict:
    """Fetch, complete in a kernel of the student's server, save and submit; return what ran."""
    listing = server.nbgrader_result("GET", "/assignments", params={"course_id": COURSE_ID})
    assert [(item["assignment_id"], item["status"]) for item in listing["value"]] == [
        (ASSIGNMENT, "released")], listing
    server.nbgrader_result("POST", "/assignments/fetch",
                           data={"course_id": COURSE_ID, "assignment_id": ASSIGNMENT})
    path = f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
    fetched = server.read_notebook(path)
    executed = server.execute_notebook(completed(fetched, source, answers))
    server.save_notebook(path, executed)
    submitted = server.nbgrader_result("POST", "/assignments/submit",
                                       data={"course_id": COURSE_ID, "assignment_id": ASSIGNMENT})
    statuses = {item["status"] for item in submitted["value"]}
    assert "submitted" in statuses, submitted
    return {"fetched": fetched, "executed": executed}


@pytest.fixture(scope="module")
def hub_run(repo_root, tmp_path_factory, report_timing):
    """The whole course cycle on a real hub; returns what each step produced."""
    state = tmp_path_factory.mktemp("hub")
    hub = Hub(state)
    source = read_notebook(repo_root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    timings, result = {}, {"source": source, "hub": hub}
    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(1) as pool:
            # the instructor's course (generated into the gradebook, as `make hub` prepares it)
            # while the hub starts
            preparing = pool.submit(load_demo_module().prepare_instructor_course,
                                    state / "home" / INSTRUCTOR, repo_root, [ASSIGNMENT])
            hub.start()
            hub.create_users([INSTRUCTOR, FULL_STUDENT, PARTIAL_STUDENT])
            hub.add_to_group("instructors", [INSTRUCTOR])
            result["bad_profile"] = hub.request(
                "POST", f"/hub/api/users/{FULL_STUDENT}/server", json={"profile": "tpu"},
                expect=(400,)).status_code
            for student in (FULL_STUDENT, PARTIAL_STUDENT):
                hub.spawn(student)
            course = preparing.result()
        hub.spawn(INSTRUCTOR)
        for name in (INSTRUCTOR, FULL_STUDENT, PARTIAL_STUDENT):
            hub.wait_ready(name)
        timings["hub up, course prepared, three servers ready"] = time.perf_counter() - start
        servers = {name: UserServer(hub, name, hub.user_token(name))
                   for name in (INSTRUCTOR, FULL_STUDENT, PARTIAL_STUDENT)}
        instructor = servers[INSTRUCTOR]
        result["student_formgrader_status"] = servers[FULL_STUDENT].request(
            "GET", "/formgrader/api/status", expect=(200, 403, 404)).status_code
        result["student_on_instructor_server"] = hub.request(
            "GET", f"/user/{INSTRUCTOR}/api/contents", token=servers[FULL_STUDENT].token,
            expect=(200, 302, 403, 404)).status_code

        instructor.nbgrader_result("POST", f"/formgrader/api/assignment/{ASSIGNMENT}/release")

        step = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            turns = {
                FULL_STUDENT: pool.submit(student_turn, servers[FULL_STUDENT], source, None),
                PARTIAL_STUDENT: pool.submit(student_turn, servers[PARTIAL_STUDENT], source,
                                             set(PARTIAL_ANSWERS)),
            }
            result["turns"] = {name: turn.result() for name, turn in turns.items()}
        timings["two students fetch, run in their kernels and submit"] = time.perf_counter() - step

        step = time.perf_counter()
        instructor.nbgrader_result("POST", f"/formgrader/api/assignment/{ASSIGNMENT}/collect")
        with ProcessWatch(hub, INSTRUCTOR) as grading:
            for student in (FULL_STUDENT, PARTIAL_STUDENT):
                instructor.nbgrader_result(
                    "POST", f"/formgrader/api/submission/{ASSIGNMENT}/{student}/autograde")
        result["grading_processes"] = grading.names
        timings["collect and autograde two submissions"] = time.perf_counter() - step
        instructor.nbgrader_result(
            "POST", f"/formgrader/api/assignment/{ASSIGNMENT}/generate_feedback")
        instructor.nbgrader_result(
            "POST", f"/formgrader/api/assignment/{ASSIGNMENT}/release_feedback")
        result["submissions"] = {
            item["student"]: item
            for item in instructor.request(
                "GET", f"/formgrader/api/submissions/{ASSIGNMENT}").json()
        }
        result["gradebook"] = gradebook_scores(course, ASSIGNMENT)

        feedback = {}
        for student in (FULL_STUDENT, PARTIAL_STUDENT):
            server = servers[student]
            server.nbgrader_result("POST", "/assignments/fetch_feedback",
                                   data={"course_id": COURSE_ID, "assignment_id": ASSIGNMENT})
            (folder,) = server.list_folder(f"{ASSIGNMENT}/feedback")
            feedback[student] = server.read_text(f"{folder['path']}/{ASSIGNMENT}.html")
        result["feedback"] = feedback
        timings["whole course cycle on the hub"] = time.perf_counter() - start
    finally:
        killed = hub.stop()
        result["left_behind"] = hub.describe(hub.processes())
        result["killed_after_hub_stop"] = killed
        for label, seconds in timings.items():
            report_timing(f"hub: {label}", seconds)
    return result


@pytest.mark.slow
def test_hub_refuses_unknown_profiles_and_keeps_students_out_of_grading(hub_run):
    assert hub_run["bad_profile"] == 400
    assert hub_run["student_formgrader_status"] == 404, "students have no formgrader"
    assert hub_run["student_on_instructor_server"] == 403, (
        "a student's token opens only their own server")


@pytest.mark.slow
def test_instructor_autogrades_in_the_course_sandbox(hub_run):
    """nbgrader_config.py turns on cnnbook's grading sandbox (GradingSandbox.enabled): the
    formgrader's autograde on the hub runs each submission's kernel under bubblewrap."""
    assert "bwrap" in hub_run["grading_processes"], sorted(hub_run["grading_processes"])


@pytest.mark.slow
def test_students_ran_their_notebooks_in_their_servers_kernels(hub_run):
    source = hub_run["source"]
    tests = [grade_id for grade_id, cell in grade_cells(source).items()
             if cell["cell_type"] == "code" and not nbgrader_metadata(cell).get("solution")]
    full = hub_run["turns"][FULL_STUDENT]["executed"]
    partial = hub_run["turns"][PARTIAL_STUDENT]["executed"]
    assert cell_errors(full) == {}, "the solution passes every visible test"
    failing = cell_errors(partial)
    assert not [grade_id for grade_id in failing if grade_id.startswith("test_output_size")]
    assert {"test_toy_shape_table", "test_toy_network_shapes"} <= set(failing), failing
    assert set(tests) - set(failing), "part 1's tests pass"
    for name in (FULL_STUDENT, PARTIAL_STUDENT):
        fetched = hub_run["turns"][name]["fetched"]
        text = json.dumps(fetched)
        assert not any(marker in text for marker in MARKERS), (
            "the released notebook holds no solution")


@pytest.mark.slow
def test_grades_follow_the_notebook_points(hub_run):
    source = hub_run["source"]
    test_cells = [grade_id for grade_id, cell in grade_cells(source).items()
                  if cell["cell_type"] == "code" and not nbgrader_metadata(cell).get("solution")]
    part_one = [grade_id for grade_id in test_cells if grade_id.startswith("test_output_size")]
    assert part_one, "the partial student's answer has tests"
    expected = {FULL_STUDENT: auto_points(source), PARTIAL_STUDENT: points_of(source, *part_one)}
    all_points = sum(float(nbgrader_metadata(cell)["points"])
                     for cell in grade_cells(source).values())
    assert expected[PARTIAL_STUDENT] < expected[FULL_STUDENT]
    for student, score in expected.items():
        submission = hub_run["submissions"][student]
        assert submission["autograded"], submission
        assert submission["score"] == pytest.approx(score), (student, submission)
        assert submission["max_score"] == pytest.approx(all_points), submission
        grades = hub_run["gradebook"][student]["grades"]
        for grade_id in test_cells:
            points = points_of(source, grade_id)
            passes = student == FULL_STUDENT or grade_id in part_one
            assert grades[grade_id][1] == pytest.approx(points if passes else 0), (
                student, grade_id)


@pytest.mark.slow
def test_students_fetch_feedback_with_their_score_and_no_hidden_test(hub_run):
    hidden_names = set()
    for block in protected_blocks(hub_run["source"]):
        for line in block:
            hidden_names.update(re.findall(r"^def (\w+)", line))
    for student, html in hub_run["feedback"].items():
        score = hub_run["submissions"][student]["score"]
        assert f"{score:g} / " in html or f"{score} / " in html, student
        for marker in MARKERS:
            assert marker not in html, f"{student}'s feedback holds {marker!r}"
        shown = sorted(name for name in hidden_names if re.search(rf"\b{name}\b", html))
        assert not shown, f"{student}'s feedback shows hidden-test code: {shown}"
    assert hidden_names, "the source defines helpers in its hidden tests"


@pytest.mark.slow
def test_hub_run_leaves_no_process_behind(hub_run):
    assert hub_run["left_behind"] == [], "processes of the hub run still alive"
