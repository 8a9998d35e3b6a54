"""JupyterHub configuration of the cnnbook course (deploy/README.md explains every step).

One file for two kinds of hub, chosen by the environment variable ``CNNBOOK_HUB_MODE``:

* ``docker`` (the default): the course hub of one machine. Each user's server runs in the course
  image (deploy/image/) through DockerSpawner, which enforces the memory and CPU limits of the
  profile the user picks and hands the GPU profile an NVIDIA GPU. Users sign up with
  NativeAuthenticator and an admin approves them. The hub's own packages:
  deploy/hub-requirements.txt.
* ``demo``: ``make hub`` and tests/test_hub.py. Every server is a local process of the hub's user
  (SimpleLocalProcessSpawner, homes under the state folder) and any password logs in
  (DummyAuthenticator): for 127.0.0.1 only, never on a network. Limits are recorded, not
  enforced (a local process cannot be capped without cgroups).

Both give the same course:

* instructors (group ``instructors``) get nbgrader's formgrader in JupyterLab; their course is
  ``~/cnnbook-course`` (a clone of the repository: nbgrader_config.py, solutions/, exercises/),
  loaded by deploy/jupyter/instructor/nbgrader_config.py;
* students (every other user) get the assignment list, and neither the formgrader nor the
  create-assignment tool (deploy/jupyter/student/);
* everyone shares the exchange folder ``CNNBOOK_EXCHANGE`` (deploy/jupyter/all/nbgrader_config.py),
  through which assignments are released, submitted, collected and fed back;
* servers idle for ``CNNBOOK_CULL_IDLE_S`` seconds (default one hour) are stopped by
  jupyterhub-idle-culler, a hub-managed service.

With ``CNNBOOK_EXCHANGE_KIND=ngshare`` the exchange is instead ngshare, a hub-managed service (the
exchange for servers that share no disk): it keeps its own courses, each with its instructors and
students, and refuses a user what their course role does not allow. Several courses then share
the hub: each instructor's ``~/cnnbook-course`` names its own ``course_id``, and a student lists,
fetches and submits only in the courses ngshare enrolled them in. Its admins
(``CNNBOOK_NGSHARE_ADMINS``) create the courses; an admin may act in every course, so an
instructor should not be one.

Environment variables (defaults in brackets): CNNBOOK_HUB_STATE [/srv/cnnbook], the hub's
database, cookie secret and (demo) homes; CNNBOOK_EXCHANGE [$CNNBOOK_HUB_STATE/exchange];
CNNBOOK_HUB_IP [127.0.0.1 in demo, all interfaces in docker]; CNNBOOK_HUB_PORT [8000];
CNNBOOK_HUB_API_PORT [8081]; CNNBOOK_PROXY_API_PORT [8001]; CNNBOOK_HUB_ADMIN_TOKEN (unset: no
admin service), an API token for a service ``course-admin`` that may create users and groups,
start servers and issue users' tokens (scripts and the test use it); CNNBOOK_IMAGE
[cnnbook-hub:latest]; CNNBOOK_INSTRUCTORS (comma-separated users of the instructors group; in
demo mode also admins); CNNBOOK_STUDENTS (demo; the other users allowed to log in);
CNNBOOK_ADMINS (docker; admin users, who approve sign-ups); CNNBOOK_HUB_CONNECT_IP (docker; the
address at which containers reach the hub [jupyterhub]); CNNBOOK_DOCKER_NETWORK [cnnbook];
CNNBOOK_EXCHANGE_KIND [folder] or ngshare; CNNBOOK_NGSHARE_PORT [10101]; CNNBOOK_NGSHARE_ADMINS
(ngshare; comma-separated users who create courses); CNNBOOK_NGSHARE_URL (ngshare; where servers
reach it [http://127.0.0.1:$CNNBOOK_NGSHARE_PORT/services/ngshare in demo mode,
http://$CNNBOOK_HUB_CONNECT_IP:... in docker mode]).
"""

import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821 (traitlets defines it when it loads this file)

DEPLOY_DIR = Path(__file__).resolve().parent
REPO_ROOT = DEPLOY_DIR.parent
MODE = os.environ.get("CNNBOOK_HUB_MODE", "docker")
if MODE not in ("docker", "demo"):
    raise ValueError(f"CNNBOOK_HUB_MODE must be 'docker' or 'demo', got {MODE!r}")
STATE_DIR = Path(os.environ.get("CNNBOOK_HUB_STATE", "/srv/cnnbook"))
EXCHANGE_DIR = os.environ.get("CNNBOOK_EXCHANGE", str(STATE_DIR / "exchange"))
INSTRUCTORS_GROUP = "instructors"
CULL_IDLE_SECONDS = int(os.environ.get("CNNBOOK_CULL_IDLE_S", "3600"))
EXCHANGE_KIND = os.environ.get("CNNBOOK_EXCHANGE_KIND", "folder")
if EXCHANGE_KIND not in ("folder", "ngshare"):
    raise ValueError(f"CNNBOOK_EXCHANGE_KIND must be 'folder' or 'ngshare', got {EXCHANGE_KIND!r}")
NGSHARE_PORT = int(os.environ.get("CNNBOOK_NGSHARE_PORT", "10101"))

# Profiles a user picks when starting a server (the spawn form, or {"profile": ...} through the
# REST API). Reading the book and the sizing and parameters assignments fit the CPU profile;
# training the ResNet assignment on full CIFAR-10 wants the GPU profile.
PROFILES = {
    "cpu": {
        "display_name": "CPU: 2 cores, 4 GB (reading, sizing, parameters)",
        "cpu_limit": 2.0,
        "mem_limit": "4G",
        "gpus": 0,
    },
    "gpu": {
        "display_name": "GPU: 1 NVIDIA GPU, 8 cores, 24 GB (training the ResNet assignment)",
        "cpu_limit": 8.0,
        "mem_limit": "24G",
        "gpus": 1,
    },
}
DEFAULT_PROFILE = "cpu"

# --- Hub, proxy and database -------------------------------------------------------------------
STATE_DIR.mkdir(parents=True, exist_ok=True)
hub_ip = os.environ.get("CNNBOOK_HUB_IP", "127.0.0.1" if MODE == "demo" else "")
c.JupyterHub.bind_url = f"http://{hub_ip}:{int(os.environ.get('CNNBOOK_HUB_PORT', '8000'))}"
c.JupyterHub.db_url = f"sqlite:///{STATE_DIR / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE_DIR / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE_DIR / "jupyterhub.pid")
c.ConfigurableHTTPProxy.pid_file = str(STATE_DIR / "jupyterhub-proxy.pid")
c.ConfigurableHTTPProxy.api_url = (
    f"http://127.0.0.1:{int(os.environ.get('CNNBOOK_PROXY_API_PORT', '8001'))}"
)
# The proxy from the npm registry (package.json; `make system` installs it).
local_proxy = REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
if local_proxy.exists():
    c.ConfigurableHTTPProxy.command = [str(local_proxy)]
# Servers and kernels that outlive the hub would hold ports and memory: stop them with it.
c.JupyterHub.cleanup_servers = True

# --- Users: instructors and students -----------------------------------------------------------
c.Authenticator.allow_all = False
c.Authenticator.allow_existing_users = True  # users created by an admin or the REST API


def _user_list(variable):
    return [name.strip() for name in os.environ.get(variable, "").split(",") if name.strip()]


# Instructors named at start-up join the group; an admin can add more in the admin panel.
c.JupyterHub.load_groups = {INSTRUCTORS_GROUP: {"users": _user_list("CNNBOOK_INSTRUCTORS")}}

services = [
    {
        # stops servers idle for CULL_IDLE_SECONDS (and their kernels with them)
        "name": "idle-culler",
        "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                    f"--timeout={CULL_IDLE_SECONDS}", "--cull-every=300"],
    }
]
roles = [
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
]
admin_token = os.environ.get("CNNBOOK_HUB_ADMIN_TOKEN")
if admin_token:
    services.append({"name": "course-admin", "api_token": admin_token})
    roles.append({
        "name": "course-admin",
        "scopes": ["admin:users", "admin:groups", "admin:servers", "tokens", "list:users"],
        "services": ["course-admin"],
    })
if EXCHANGE_KIND == "ngshare":
    # ngshare (a tornado service that checks each request's hub token): its database and the
    # files of every release, submission and feedback under the state folder.
    ngshare_state = STATE_DIR / "ngshare"
    (ngshare_state / "files").mkdir(parents=True, exist_ok=True)
    services.append({
        "name": "ngshare",
        "url": f"http://127.0.0.1:{NGSHARE_PORT}",
        # ngshare through its launcher, which makes it save its rows under SQLAlchemy 2
        "command": [sys.executable, str(DEPLOY_DIR / "ngshare_service.py"),
                    # demo: this machine only; docker: the containers reach it on the host
                    f"--bind={'0.0.0.0' if MODE == 'docker' else '127.0.0.1'}",
                    f"--database=sqlite:///{ngshare_state / 'ngshare.db'}",
                    f"--storage={ngshare_state / 'files'}",
                    f"--admins={','.join(_user_list('CNNBOOK_NGSHARE_ADMINS'))}"],
        "oauth_no_confirm": True,
    })
    # every user may call ngshare, and so may their server's token (nbgrader's exchange runs
    # in the server); what each may do there is ngshare's course roles
    roles.append({"name": "user", "scopes": ["self", "access:services!service=ngshare"]})
    c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server",
                                     "access:services!service=ngshare"]
# A test's hub run tags every process it starts (CNNBOOK_HUB_RUN, tests/hub_client.py); a managed
# service gets only the environment given here, so it is given the tag: the test's sweep then
# finds and ends the services too where the hub did not stop them.
if "CNNBOOK_HUB_RUN" in os.environ:
    for service in services:
        if "command" in service:
            service.setdefault("environment", {})["CNNBOOK_HUB_RUN"] = os.environ["CNNBOOK_HUB_RUN"]
c.JupyterHub.services = services
c.JupyterHub.load_roles = roles


# --- Single-user servers: profiles, roles, exchange --------------------------------------------
# Where a server finds deploy/jupyter/ and the exchange: in the image (deploy/image/Dockerfile
# copies the folder there, the exchange is mounted) or, in demo mode, in this checkout.
SERVER_CONFIG_ROOT = "/etc/cnnbook/jupyter" if MODE == "docker" else str(DEPLOY_DIR / "jupyter")
SERVER_EXCHANGE_DIR = "/srv/nbgrader/exchange" if MODE == "docker" else EXCHANGE_DIR
NGSHARE_HOST = (os.environ.get("CNNBOOK_HUB_CONNECT_IP", "jupyterhub") if MODE == "docker"
                else "127.0.0.1")
NGSHARE_URL = (os.environ.get("CNNBOOK_NGSHARE_URL")
               or f"http://{NGSHARE_HOST}:{NGSHARE_PORT}/services/ngshare")


def apply_profile(spawner, user_options):
    """Apply the profile named by ``user_options["profile"]`` (default ``cpu``): memory and CPU
    limits, and in docker mode the GPU. An unknown profile is refused (HTTP 400 to the user)."""
    name = (user_options or {}).get("profile", DEFAULT_PROFILE)
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {name!r}")
    profile = PROFILES[name]
    spawner.mem_limit = profile["mem_limit"]
    spawner.cpu_limit = profile["cpu_limit"]
    spawner.environment = {**spawner.environment, "CNNBOOK_PROFILE": name}
    if MODE == "docker":
        # docker-py turns each dict into a docker.types.DeviceRequest (`docker run --gpus 1`)
        host_config = dict(spawner.extra_host_config)
        if profile["gpus"]:
            host_config["device_requests"] = [
                {"count": profile["gpus"], "capabilities": [["gpu"]]}
            ]
        else:
            host_config.pop("device_requests", None)
        spawner.extra_host_config = host_config


def _profile_form(spawner):
    options = "\n".join(
        f'<option value="{key}"{" selected" if key == DEFAULT_PROFILE else ""}>'
        f'{profile["display_name"]}</option>'
        for key, profile in PROFILES.items()
    )
    return (f'<label for="profile">Server</label>\n'
            f'<select name="profile" id="profile">{options}</select>')


def is_instructor(user):
    return any(group.name == INSTRUCTORS_GROUP for group in user.groups)


def configure_role(spawner):
    """Instructors get the formgrader and their course ``~/cnnbook-course``; students get the
    assignment list only. Both read the shared exchange's settings."""
    role = "instructor" if is_instructor(spawner.user) else "student"
    spawner.environment = {
        **spawner.environment,
        "JUPYTER_CONFIG_PATH": f"{SERVER_CONFIG_ROOT}/{role}:{SERVER_CONFIG_ROOT}/all",
        "CNNBOOK_EXCHANGE": SERVER_EXCHANGE_DIR,
        "CNNBOOK_EXCHANGE_KIND": EXCHANGE_KIND,
        "CNNBOOK_ROLE": role,
    }
    if EXCHANGE_KIND == "ngshare":
        spawner.environment["CNNBOOK_NGSHARE_URL"] = NGSHARE_URL


c.Spawner.options_form = _profile_form
c.Spawner.options_from_form = "simple"
c.Spawner.apply_user_options = apply_profile
c.Spawner.pre_spawn_hook = configure_role
c.Spawner.default_url = "/lab"
c.Spawner.http_timeout = 120  # a busy 2-core machine takes a while to start JupyterLab
c.Spawner.start_timeout = 180

# The exchange: world-writable with the sticky bit, as nbgrader expects of a shared folder; with
# ngshare there is none (a folder every server could write would be a second, unguarded way in).
if EXCHANGE_KIND == "folder":
    os.makedirs(EXCHANGE_DIR, exist_ok=True)
    os.chmod(EXCHANGE_DIR, 0o1777)

if MODE == "docker":
    c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
    c.JupyterHub.authenticator_class = "native"
    c.NativeAuthenticator.open_signup = False  # an admin approves each sign-up
    c.JupyterHub.hub_ip = "0.0.0.0"  # containers reach the hub through the docker network
    c.JupyterHub.hub_connect_ip = os.environ.get("CNNBOOK_HUB_CONNECT_IP", "jupyterhub")
    c.DockerSpawner.image = os.environ.get("CNNBOOK_IMAGE", "cnnbook-hub:latest")
    c.DockerSpawner.network_name = os.environ.get("CNNBOOK_DOCKER_NETWORK", "cnnbook")
    c.DockerSpawner.remove = True
    c.DockerSpawner.notebook_dir = "/home/jovyan"
    c.DockerSpawner.volumes = {"cnnbook-user-{username}": "/home/jovyan"}
    if EXCHANGE_KIND == "folder":
        c.DockerSpawner.volumes[EXCHANGE_DIR] = "/srv/nbgrader/exchange"
    c.Authenticator.admin_users = set(_user_list("CNNBOOK_ADMINS"))
else:
    instructors = _user_list("CNNBOOK_INSTRUCTORS")
    students = _user_list("CNNBOOK_STUDENTS")
    c.JupyterHub.authenticator_class = "dummy"
    c.Authenticator.allowed_users = set(instructors + students)
    c.Authenticator.admin_users = set(instructors)
    c.JupyterHub.spawner_class = "simple"
    c.SimpleLocalProcessSpawner.home_dir_template = str(STATE_DIR / "home" / "{username}")
    c.JupyterHub.hub_bind_url = (
        f"http://127.0.0.1:{int(os.environ.get('CNNBOOK_HUB_API_PORT', '8081'))}"
    )
    # The servers run from the hub's environment (the repository's .venv): its Jupyter, nbgrader
    # and cnnbook, and its bin first on PATH (nbgrader runs alembic from there).
    python_bin = Path(sys.executable).parent
    c.Spawner.cmd = [str(python_bin / "jupyterhub-singleuser")]
    c.Spawner.environment = {
        "PATH": os.pathsep.join([str(python_bin), os.environ.get("PATH", "")]),
    }
    if os.geteuid() == 0:
        # CI and containers run the demo as root; Jupyter refuses root unless told
        c.Spawner.args = ["--allow-root"]
    c.Spawner.env_keep = [
        "PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "CNNBOOK_DATA",
        "TF_CPP_MIN_LOG_LEVEL", "CNNBOOK_HUB_RUN",
    ]
