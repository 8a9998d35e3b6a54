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

import datetime
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
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


@pytest.mark.parametrize("mode", ["demo", "docker"])
def test_hub_runs_ngshare_as_its_service_when_asked(tmp_path, monkeypatch, mode):
    """CNNBOOK_EXCHANGE_KIND=ngshare: the hub starts ngshare with its state under the hub's,
    users and their servers' tokens may call it, and every server is told where it is."""
    from traitlets.config.loader import PyFileConfigLoader

    monkeypatch.setenv("CNNBOOK_HUB_MODE", mode)
    monkeypatch.setenv("CNNBOOK_HUB_STATE", str(tmp_path))
    monkeypatch.setenv("CNNBOOK_EXCHANGE_KIND", "ngshare")
    monkeypatch.delenv("CNNBOOK_EXCHANGE", raising=False)
    monkeypatch.setenv("CNNBOOK_NGSHARE_PORT", "10999")
    monkeypatch.setenv("CNNBOOK_NGSHARE_ADMINS", "registrar, dean")
    monkeypatch.setenv("CNNBOOK_HUB_RUN", "run-42")
    config = PyFileConfigLoader("jupyterhub_config.py", str(DEPLOY)).load_config()
    service = next(service for service in config.JupyterHub.services
                   if service["name"] == "ngshare")
    # every managed service carries the test run's tag, so a hub that dies leaves none behind
    managed = [service for service in config.JupyterHub.services if "command" in service]
    assert {service["name"] for service in managed} == {"idle-culler", "ngshare"}
    assert all(service["environment"] == {"CNNBOOK_HUB_RUN": "run-42"} for service in managed)
    assert service["url"] == "http://127.0.0.1:10999"
    assert service["command"][1] == str(DEPLOY / "ngshare_service.py")
    bind = "0.0.0.0" if mode == "docker" else "127.0.0.1"
    assert f"--bind={bind}" in service["command"]
    assert not (tmp_path / "exchange").exists(), "no shared folder beside ngshare"
    if mode == "docker":
        assert list(config.DockerSpawner.volumes.values()) == ["/home/jovyan"]
    assert f"--database=sqlite:///{tmp_path / 'ngshare' / 'ngshare.db'}" in service["command"]
    assert "--admins=registrar,dean" in service["command"]
    assert (tmp_path / "ngshare" / "files").is_dir()
    user_role = next(role for role in config.JupyterHub.load_roles if role["name"] == "user")
    assert set(user_role["scopes"]) == {"self", "access:services!service=ngshare"}
    assert "access:services!service=ngshare" in config.Spawner.server_token_scopes

    class Spawner:
        environment = {}

        class user:  # noqa: N801 (the spawner's user, as JupyterHub gives it)
            groups = []

    spawner = Spawner()
    config.Spawner.pre_spawn_hook(spawner)
    host = "jupyterhub" if mode == "docker" else "127.0.0.1"
    assert spawner.environment["CNNBOOK_EXCHANGE_KIND"] == "ngshare"
    assert spawner.environment["CNNBOOK_NGSHARE_URL"] == (
        f"http://{host}:10999/services/ngshare")
    monkeypatch.setenv("CNNBOOK_EXCHANGE_KIND", "dropbox")
    with pytest.raises(ValueError, match="'folder' or 'ngshare'"):
        PyFileConfigLoader("jupyterhub_config.py", str(DEPLOY)).load_config()


@pytest.mark.parametrize("role", ["student", "instructor", "course folder"])
def test_servers_use_ngshare_s_exchange_when_the_hub_says(repo_root, tmp_path, monkeypatch, role):
    """A server's nbgrader settings (deploy/jupyter/), and the course's own nbgrader_config.py
    that a command run in the course folder reads last: the folder exchange by default; with
    ngshare every exchange step is ngshare_exchange's, the collect cnnbook's subclass of it."""
    from traitlets.config.loader import PyFileConfigLoader

    home = tmp_path / "home"
    (home / "cnnbook-course").mkdir(parents=True)
    shutil.copy2(repo_root / "nbgrader_config.py", home / "cnnbook-course" / "nbgrader_config.py")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("JUPYTERHUB_USER", "someone")
    monkeypatch.setenv("CNNBOOK_EXCHANGE_KIND", "ngshare")
    url = f"http://127.0.0.1:10999/services/ngshare/{role.replace(' ', '-')}"
    monkeypatch.setenv("CNNBOOK_NGSHARE_URL", url)

    def load():
        folders = {"student": [DEPLOY / "jupyter" / "all", DEPLOY / "jupyter" / "student"],
                   "instructor": [DEPLOY / "jupyter" / "all", DEPLOY / "jupyter" / "instructor"],
                   "course folder": [DEPLOY / "jupyter" / "all", DEPLOY / "jupyter" / "instructor",
                                     home / "cnnbook-course"]}[role]
        config = PyFileConfigLoader("nbgrader_config.py", str(folders[0])).load_config()
        for folder in folders[1:]:  # later ones win, as nbgrader loads them
            config.merge(PyFileConfigLoader("nbgrader_config.py", str(folder)).load_config())
        return config

    config = load()
    from ngshare_exchange import ExchangeSubmit

    assert config.ExchangeFactory.submit is ExchangeSubmit
    assert config.ExchangeFactory.exchange._ngshare_url == url
    if role == "student":
        # ngshare names the submitter from the request's hub token, and refuses an explicit id
        assert "student_id" not in config.CourseDirectory
    else:
        assert config.ExchangeFactory.collect == "cnnbook.grading.ngshare_collect.NgshareCollect"
    monkeypatch.setenv("CNNBOOK_EXCHANGE_KIND", "folder")
    config = load()
    assert "submit" not in config.ExchangeFactory
    if role == "student":  # the shared folder names the submitter by the hub's user name
        assert config.CourseDirectory.student_id == "someone"
    else:
        assert config.ExchangeFactory.collect == (
            "cnnbook.grading.collect.CollectWithObservedTime")


def _ngshare_launcher():
    spec = importlib.util.spec_from_file_location("ngshare_service",
                                                  DEPLOY / "ngshare_service.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ngshare_launcher_saves_what_ngshare_creates_under_sqlalchemy_2(tmp_path, monkeypatch):
    """ngshare's own models in a real SQLite database: without the launcher's listeners a new
    assignment and a submission are never saved (SQLAlchemy 2 dropped the backref cascade
    ngshare relies on); with them both are."""
    import warnings

    from ngshare.database import database
    from sqlalchemy import create_engine, exc
    from sqlalchemy.orm import sessionmaker

    def release_and_submit(url: str) -> tuple[int, int]:
        engine = create_engine(url)
        database.Base.metadata.create_all(engine)
        session = sessionmaker(bind=engine)()
        teacher, student = database.User("t"), database.User("s")
        course = database.Course("c1", [teacher])
        session.add_all([teacher, student, course])
        session.commit()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", exc.SAWarning)
            assignment = database.Assignment("a1", course)
            session.commit()
            database.Submission(student, assignment)
            session.commit()
        counts = (session.query(database.Assignment).count(),
                  session.query(database.Submission).count())
        session.close()
        return counts

    assert release_and_submit(f"sqlite:///{tmp_path / 'before.db'}") == (0, 0)
    listened = _ngshare_launcher().restore_backref_cascade(database)
    assert {"Assignment.course", "Submission.assignment", "Submission.student"} <= set(listened)
    assert release_and_submit(f"sqlite:///{tmp_path / 'after.db'}") == (1, 1)


def test_ngshare_launcher_takes_only_users_tokens_meant_for_ngshare():
    launcher = _ngshare_launcher()
    allowed = {"kind": "user", "name": "s", "scopes": ["access:services!service=ngshare"]}
    assert launcher.may_use_ngshare(allowed)
    assert launcher.may_use_ngshare({**allowed, "scopes": ["access:services", "admin:users"]})
    assert not launcher.may_use_ngshare({**allowed, "scopes": ["read:users:name!user=s"]})
    assert not launcher.may_use_ngshare({**allowed, "kind": "service"})
    assert not launcher.may_use_ngshare(None)

    class Handler:  # ngshare's handler asks the hub who owns a token
        def user_for_token(self, token):
            return {"kind": "user", "name": "s", "scopes": [token]}

    launcher.require_scope(Handler)
    assert Handler().user_for_token("access:services!service=ngshare")["name"] == "s"
    assert Handler().user_for_token("identify") is None
    # a token counts only from the Authorization header, never from ngshare's login cookie
    assert launcher.token_from_header({"Authorization": "token abc"}) == "abc"
    assert launcher.token_from_header({"Authorization": "Bearer abc"}) is None
    assert launcher.token_from_header({"Cookie": "ngshare-oauth-token=abc"}) is None

    class Request:
        headers = {"Authorization": "token xyz", "Cookie": "ngshare-oauth-token=abc"}

    class Cookied:
        request = Request()

        def get_current_token(self):
            return "from the cookie"

    launcher.header_tokens_only(Cookied)
    assert Cookied().get_current_token() == "xyz"
    assert launcher.bind_address(["--bind", "127.0.0.1", "--admins=r"]) == ("127.0.0.1",
                                                                           ["--admins=r"])
    assert launcher.bind_address(["--bind=0.0.0.0"]) == ("0.0.0.0", [])
    assert launcher.bind_address(["--database=x"]) == (None, ["--database=x"])


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


# --- Slow: two courses on one hub, through ngshare ------------------------------------------------

NGSHARE_ADMIN = "registrar"
"""ngshare's admin (CNNBOOK_NGSHARE_ADMINS): creates the courses; no instructor is one, since an
admin may act in every course."""
SECOND = {"course": "cnnbook-b", "instructor": "instructor_b", "student": "student3",
          "assignment": "parameters"}
"""The second course: its own instructor, student and assignment."""


def gradebook_students(course: Path) -> list[str]:
    """The student ids of the gradebook of the course folder ``course``."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return [student.id for student in gradebook.students]


def ngshare(hub: Hub, token: str, method: str, path: str, **data) -> tuple[int, dict]:
    """``method`` on ngshare's REST API (through the hub's proxy) as the owner of ``token``:
    the status and the JSON reply."""
    reply = requests.request(method, f"{hub.url}/services/ngshare/{path}", data=data,
                             headers={"Authorization": f"token {token}"}, timeout=120,
                             allow_redirects=False)
    try:
        return reply.status_code, reply.json()
    except ValueError:
        return reply.status_code, {"text": reply.text[:500]}


def course_management(hub: Hub, user: str, token: str, cwd: Path,
                      *arguments: str) -> subprocess.CompletedProcess:
    """``ngshare-course-management`` as ``user`` in a terminal of their server would run it
    (their token, the servers' nbgrader settings, deploy/jupyter/all), in ``cwd``."""
    environment = {**os.environ, "JUPYTERHUB_USER": user, "JUPYTERHUB_API_TOKEN": token,
                   "JUPYTER_CONFIG_PATH": str(DEPLOY / "jupyter" / "all"),
                   "CNNBOOK_EXCHANGE_KIND": "ngshare",
                   "CNNBOOK_NGSHARE_URL": f"{hub.url}/services/ngshare",
                   "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                            os.environ.get("PATH", "")])}
    return subprocess.run(["ngshare-course-management", *arguments], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300)


def nbgrader_reply(server: UserServer, method: str, path: str, **kwargs) -> dict:
    """An nbgrader API call whose failure is a result, not an error of the test."""
    return server.request(method, path, expect=(200, 500), **kwargs).json()


@pytest.fixture(scope="module")
def ngshare_run(repo_root, tmp_path_factory, report_timing):
    """Two courses on one hub whose exchange is ngshare: each instructor releases their course's
    assignment, each student lists what they may see and tries the other course, one student
    submits, their instructor collects, grades and returns feedback through ngshare, and the
    other course's instructor tries to read it."""
    state = tmp_path_factory.mktemp("hub-ngshare")
    hub = Hub(state, environment={"CNNBOOK_EXCHANGE_KIND": "ngshare",
                                  "CNNBOOK_NGSHARE_ADMINS": NGSHARE_ADMIN})
    source = read_notebook(repo_root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    demo = load_demo_module()
    result, start = {"source": source}, time.perf_counter()
    first = {"course": COURSE_ID, "instructor": INSTRUCTOR, "student": FULL_STUDENT,
             "assignment": ASSIGNMENT}
    courses = (first, SECOND)
    try:
        with ThreadPoolExecutor(2) as pool:
            preparing = [pool.submit(demo.prepare_instructor_course,
                                     state / "home" / course["instructor"], repo_root,
                                     [course["assignment"]],
                                     None if course is first else course["course"])
                         for course in courses]
            hub.start()
            hub.create_users([*(course[role] for course in courses
                                for role in ("instructor", "student")), NGSHARE_ADMIN])
            hub.add_to_group("instructors", [course["instructor"] for course in courses])
            for course in courses:
                hub.spawn(course["student"])
            for done in preparing:
                done.result()
        for course in courses:
            hub.spawn(course["instructor"])
        tokens = {name: hub.user_token(name) for course in courses
                  for name in (course["instructor"], course["student"])}
        admin = hub.user_token(NGSHARE_ADMIN)
        # the roster, with the guide's commands: the admin creates each course with its
        # instructor, who enrols the student (in ngshare and in their gradebook)
        result["roster"] = []
        for course in courses:
            folder = state / "home" / course["instructor"] / demo.COURSE_FOLDER
            result["roster"] += [
                course_management(hub, NGSHARE_ADMIN, admin, state, "create_course",
                                  course["course"], course["instructor"]),
                course_management(hub, course["instructor"], tokens[course["instructor"]],
                                  folder, "add_student", course["course"], course["student"])]
        result["gradebook_students"] = {
            course["instructor"]: sorted(gradebook_students(
                state / "home" / course["instructor"] / demo.COURSE_FOLDER))
            for course in courses}
        result["instructor_creates_course"] = ngshare(
            hub, tokens[INSTRUCTOR], "POST", "course/another", instructors=json.dumps([INSTRUCTOR]))
        for course in courses:
            for role in ("instructor", "student"):
                hub.wait_ready(course[role])
        servers = {name: UserServer(hub, name, token) for name, token in tokens.items()}
        report_timing("hub with ngshare: two courses, four servers ready",
                      time.perf_counter() - start)

        for course in courses:
            servers[course["instructor"]].nbgrader_result(
                "POST", f"/formgrader/api/assignment/{course['assignment']}/release")
        result["formgrader_released"] = {  # what each formgrader's exchange lists as released
            course["instructor"]: sorted(
                item["name"] for item in servers[course["instructor"]].request(
                    "GET", "/formgrader/api/assignments").json() if item["status"] == "released")
            for course in courses}
        result["courses_listed"] = {
            course["student"]: servers[course["student"]].nbgrader_result("GET", "/courses")
            for course in courses}
        result["assignments_listed"] = {
            course["student"]: servers[course["student"]].nbgrader_result(
                "GET", "/assignments", params={"course_id": course["course"]})
            for course in courses}
        # the second course's student and instructor reach for the first course
        intruder, other = servers[SECOND["student"]], servers[SECOND["instructor"]]
        result["intruder_lists"] = nbgrader_reply(intruder, "GET", "/assignments",
                                                  params={"course_id": COURSE_ID})
        result["intruder_fetches"] = nbgrader_reply(
            intruder, "POST", "/assignments/fetch",
            data={"course_id": COURSE_ID, "assignment_id": ASSIGNMENT})
        result["intruder_home"] = sorted(item["name"] for item in intruder.list_folder(""))
        result["intruder_on_ngshare"] = ngshare(hub, tokens[SECOND["student"]], "GET",
                                                f"assignment/{COURSE_ID}/{ASSIGNMENT}")

        student = servers[FULL_STUDENT]
        student.nbgrader_result("POST", "/assignments/fetch",
                                data={"course_id": COURSE_ID, "assignment_id": ASSIGNMENT})
        path = f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
        student.save_notebook(path, completed(student.read_notebook(path), source, None))
        # a time of the student's own beside the notebook: ngshare's must win
        student.request("PUT", f"/api/contents/{ASSIGNMENT}/timestamp.txt",
                         json={"type": "file", "format": "text",
                               "content": "2000-01-01 00:00:00.000000 UTC"})
        submitted = time.time()
        student.nbgrader_result("POST", "/assignments/submit",
                                data={"course_id": COURSE_ID, "assignment_id": ASSIGNMENT})
        result["other_instructor_on_ngshare"] = {
            "submissions": ngshare(hub, tokens[SECOND["instructor"]], "GET",
                                   f"submissions/{COURSE_ID}/{ASSIGNMENT}"),
            "download": ngshare(hub, tokens[SECOND["instructor"]], "GET",
                                f"submission/{COURSE_ID}/{ASSIGNMENT}/{FULL_STUDENT}"),
            "students": ngshare(hub, tokens[SECOND["instructor"]], "GET",
                                f"students/{COURSE_ID}"),
        }
        result["student_on_ngshare"] = ngshare(hub, tokens[FULL_STUDENT], "GET",
                                               f"submissions/{COURSE_ID}/{ASSIGNMENT}")
        result["instructor_on_ngshare"] = ngshare(hub, tokens[INSTRUCTOR], "GET",
                                                  f"submissions/{COURSE_ID}/{ASSIGNMENT}")
        # a token of the student's that was not made for ngshare (one they might give another
        # service) does not act as them there
        narrow = hub.request("POST", f"/hub/api/users/{FULL_STUDENT}/tokens",
                             json={"note": "another service", "scopes": ["read:users:name!user"]}
                             ).json()["token"]
        result["narrow_token_on_ngshare"] = ngshare(hub, narrow, "GET",
                                                    f"assignments/{COURSE_ID}")
        result["student_token_on_ngshare"] = ngshare(hub, tokens[FULL_STUDENT], "GET",
                                                     f"assignments/{COURSE_ID}")
        reply = other.request("GET", f"/formgrader/api/submissions/{ASSIGNMENT}",
                              expect=(200, 404, 500))
        result["other_formgrader_submissions"] = (reply.status_code, reply.text[:500])

        step = time.perf_counter()
        instructor = servers[INSTRUCTOR]
        instructor.nbgrader_result("POST", f"/formgrader/api/assignment/{ASSIGNMENT}/collect")
        instructor.nbgrader_result(
            "POST", f"/formgrader/api/submission/{ASSIGNMENT}/{FULL_STUDENT}/autograde")
        instructor.nbgrader_result(
            "POST", f"/formgrader/api/assignment/{ASSIGNMENT}/generate_feedback")
        instructor.nbgrader_result(
            "POST", f"/formgrader/api/assignment/{ASSIGNMENT}/release_feedback")
        report_timing("hub with ngshare: collect, autograde, feedback of one submission",
                      time.perf_counter() - step)
        course_root = state / "home" / INSTRUCTOR / demo.COURSE_FOLDER
        result["submitted_at"] = submitted
        result["timestamp"] = (course_root / "submitted" / FULL_STUDENT / ASSIGNMENT
                               / "timestamp.txt").read_text()
        result["submissions"] = {item["student"]: item for item in instructor.request(
            "GET", f"/formgrader/api/submissions/{ASSIGNMENT}").json()}
        student.nbgrader_result("POST", "/assignments/fetch_feedback",
                                data={"course_id": COURSE_ID, "assignment_id": ASSIGNMENT})
        (folder,) = student.list_folder(f"{ASSIGNMENT}/feedback")
        result["feedback"] = student.read_text(f"{folder['path']}/{ASSIGNMENT}.html")
        result["exchange_folder_exists"] = (state / "exchange").exists()
        report_timing("hub with ngshare: whole run", time.perf_counter() - start)
    finally:
        hub.stop()
        result["left_behind"] = hub.describe(hub.processes())
    return result


@pytest.mark.slow
def test_ngshare_keeps_each_course_to_its_own_people(ngshare_run):
    # the admin created both courses and each instructor enrolled their student; an instructor
    # cannot create a course
    for done in ngshare_run["roster"]:
        assert done.returncode == 0 and "Successfully" in done.stdout, (
            done.args, done.stdout, done.stderr)
    assert ngshare_run["gradebook_students"] == {INSTRUCTOR: [FULL_STUDENT],
                                                 SECOND["instructor"]: [SECOND["student"]]}
    assert ngshare_run["instructor_creates_course"][0] == 403
    # each formgrader sees its own course's release; each student sees only their course
    assert ngshare_run["formgrader_released"] == {INSTRUCTOR: [ASSIGNMENT],
                                                  SECOND["instructor"]: [SECOND["assignment"]]}
    assert ngshare_run["courses_listed"] == {
        FULL_STUDENT: {"success": True, "value": [COURSE_ID]},
        SECOND["student"]: {"success": True, "value": [SECOND["course"]]}}
    for student, course, assignment in ((FULL_STUDENT, COURSE_ID, ASSIGNMENT),
                                        (SECOND["student"], SECOND["course"],
                                         SECOND["assignment"])):
        listed = ngshare_run["assignments_listed"][student]["value"]
        assert [(item["course_id"], item["assignment_id"], item["status"])
                for item in listed] == [(course, assignment, "released")], listed
    # the other course's student can neither list nor fetch the first course's assignment
    # (nbgrader's server extension answers a fetch with the course's listing, empty here)
    lists, fetches = ngshare_run["intruder_lists"], ngshare_run["intruder_fetches"]
    assert not lists.get("value") and not fetches.get("value"), (lists, fetches)
    assert ASSIGNMENT not in ngshare_run["intruder_home"], ngshare_run["intruder_home"]
    status, reply = ngshare_run["intruder_on_ngshare"]
    assert status == 403 and reply.get("success") is False, (status, reply)
    # the other course's instructor can neither list, download nor see the roster of a
    # submission of the first course, nor can its student list the submissions
    for what, (status, reply) in ngshare_run["other_instructor_on_ngshare"].items():
        assert status == 403 and reply.get("success") is False, (what, status, reply)
    assert ngshare_run["student_on_ngshare"][0] == 403
    # a token that was not made for ngshare is nobody there; the student's own token works
    # (anonymous to ngshare: its GET handlers send an anonymous request to the login page)
    assert ngshare_run["narrow_token_on_ngshare"][0] == 302, ngshare_run["narrow_token_on_ngshare"]
    status, reply = ngshare_run["student_token_on_ngshare"]
    assert status == 200 and reply["assignments"] == [ASSIGNMENT], reply
    # and their formgrader lists no submission of it
    status, text = ngshare_run["other_formgrader_submissions"]
    assert status != 200 or json.loads(text) == [], (status, text)
    assert FULL_STUDENT not in text


@pytest.mark.slow
def test_a_class_is_graded_through_ngshare_with_the_servers_time(ngshare_run):
    """Release, fetch, submit, collect, autograde and feedback went through ngshare alone (the
    hub has no shared folder); the submission's time is ngshare's, the server's, not the one the
    student put beside the notebook."""
    assert not ngshare_run["exchange_folder_exists"]
    status, reply = ngshare_run["instructor_on_ngshare"]
    assert status == 200 and [item["student_id"] for item in reply["submissions"]] == [
        FULL_STUDENT], reply
    submission = ngshare_run["submissions"][FULL_STUDENT]
    source = ngshare_run["source"]
    assert submission["autograded"] and submission["score"] == pytest.approx(auto_points(source))
    html = ngshare_run["feedback"]
    assert f"{submission['score']:g} / " in html or f"{submission['score']} / " in html
    for marker in MARKERS:
        assert marker not in html
    # ngshare's record of the arrival (UTC), within a minute of the submit call
    stamp = ngshare_run["timestamp"].strip()
    assert not stamp.startswith("2000"), stamp
    arrived = datetime.datetime.strptime(stamp[:26], "%Y-%m-%d %H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    assert abs(arrived - ngshare_run["submitted_at"]) < 60, (stamp, ngshare_run["submitted_at"])


@pytest.mark.slow
def test_ngshare_run_leaves_no_process_behind(ngshare_run):
    assert ngshare_run["left_behind"] == []


def test_make_hub_with_ngshare_prepares_two_courses_and_names_the_admin(tmp_path, monkeypatch):
    """``make hub HUB_OPTIONS=--ngshare`` (deploy/demo_hub.py): the second instructor's course
    names its own course id, and the hub starts with ngshare and its admin."""
    for variable in ("CNNBOOK_EXCHANGE_KIND", "CNNBOOK_NGSHARE_ADMINS"):
        monkeypatch.delenv(variable, raising=False)
    demo = load_demo_module()
    prepared, started = [], {}
    monkeypatch.setattr(demo, "prepare_instructor_course",
                        lambda home, *args, course_id=None: prepared.append(
                            (Path(home).name, course_id)))
    monkeypatch.setattr(demo.os, "execve",
                        lambda program, argv, environment: started.update(environment))
    demo.main(["--state", str(tmp_path), "--port", "8123", "--ngshare"])
    assert prepared == [("instructor", None), ("instructor_b", "cnnbook-b")]
    assert started["CNNBOOK_EXCHANGE_KIND"] == "ngshare"
    assert started["CNNBOOK_NGSHARE_ADMINS"] == "registrar"
    assert started["CNNBOOK_INSTRUCTORS"] == "instructor,instructor_b"
    assert "registrar" in started["CNNBOOK_STUDENTS"].split(",")
    prepared.clear()
    started.clear()
    demo.main(["--state", str(tmp_path), "--port", "8123"])
    assert prepared == [("instructor", None)] and "CNNBOOK_EXCHANGE_KIND" not in started


def test_a_course_copy_names_its_own_course(repo_root, tmp_path):
    """prepare_instructor_course(course_id=...) writes the course id into the copy's config (no
    assignment generated here: that is the hub tests' work)."""
    demo = load_demo_module()
    course = demo.prepare_instructor_course(tmp_path / "home", repo_root, [],
                                            course_id="cnnbook-b")
    assert 'c.CourseDirectory.course_id = \'cnnbook-b\'' in (
        course / "nbgrader_config.py").read_text()
    with pytest.raises(ValueError, match="course_id"):
        demo.prepare_instructor_course(tmp_path / "other", repo_root, [], course_id="../x")
