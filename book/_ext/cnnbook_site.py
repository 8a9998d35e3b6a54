"""Sphinx extension of the cnnbook site: assignment launch links, MathJax served with the site, and
one inline script per page.

Loaded by ``_config.yml`` (``sphinx: local_extensions``). It does three things:

1. The directive ``launch-assignment`` (one per chapter that has an assignment)::

       ```{launch-assignment} sizing
       ```

   renders a box that links to ``exercises/sizing/sizing.ipynb`` opened on the course's JupyterHub
   through nbgitpuller, with Colab and Binder as alternatives. Every URL comes from the settings
   that ``_config.yml`` holds once: ``repository: url/branch`` and ``launch_buttons:
   jupyterhub_url/binderhub_url/notebook_interface`` (the same settings give the theme's launch
   menu on every chapter page). :func:`assignment_launch_urls` writes the URLs. A link appears
   only for what is set: while ``repository.url`` is the shipped placeholder
   (:func:`repository_is_set`) the box and the theme's menu have no link (the box says what a
   course sets), and without ``jupyterhub_url`` there is no hub link.
2. MathJax 3 is copied from ``node_modules/mathjax/es5`` (the npm package of ``package.json``)
   into the site's ``_static/mathjax/``, so that ``mathjax_path: mathjax/tex-mml-chtml.js`` serves
   it with the site: pages typeset their mathematics offline, without a CDN.
3. Each inline ``<script>`` appears once per page. Sphinx 7.4.7 writes every inline script that an
   extension adds after the builder starts twice (``Sphinx.add_js_file`` records its file name as
   ``None``, ``StandaloneHTMLBuilder.prepare_writing`` adds it again as ``''``), so sphinx-thebe's
   ``const THEBE_JS_URL = ...`` was declared twice and every page logged a ``SyntaxError``.
"""

from __future__ import annotations

import posixpath
import re
import shutil
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import ConfigError, ExtensionError
from sphinx.util.docutils import SphinxDirective

#: Where Colab opens a notebook from a public GitHub repository.
COLAB_URL = "https://colab.research.google.com"

#: The organisation of the placeholder ``repository.url`` in the shipped ``_config.yml``: a build
#: with it renders no launch link (it would lead nowhere).
PLACEHOLDER_ORGANISATION = "YOUR-ORGANISATION"

_NOTEBOOK_INTERFACE_PREFIX = {"classic": "tree", "jupyterlab": "lab/tree"}
_ASSIGNMENT_ID = re.compile(r"[A-Za-z0-9_-]+")


def _check_http_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"{name} must be an http(s) URL such as https://hub.example.org, got {url!r}: "
            "set it in _config.yml"
        )
    return url.rstrip("/")


def _github_org_repo(repository_url: str) -> tuple[str, str] | None:
    """``(org, repo)`` of a ``https://github.com/<org>/<repo>`` URL, ``None`` for other hosts."""
    parts = urlsplit(repository_url)
    segments = [segment for segment in parts.path.split("/") if segment]
    if parts.netloc.lower() != "github.com":
        return None
    if len(segments) != 2:
        raise ValueError(
            f"repository.url must be https://github.com/<organisation>/<repository>, got "
            f"{repository_url!r}: set it in _config.yml"
        )
    return segments[0], segments[1].removesuffix(".git")


def assignment_launch_urls(
    *,
    repository_url: str,
    branch: str,
    notebook_path: str,
    jupyterhub_url: str = "",
    binderhub_url: str = "",
    notebook_interface: str = "jupyterlab",
) -> dict[str, str]:
    """The URLs that open ``notebook_path`` (relative to the repository root) from the repository.

    * ``"hub"`` (when ``jupyterhub_url`` is set): nbgitpuller on the course's JupyterHub,
      ``{jupyterhub_url}/hub/user-redirect/git-pull?repo={repository_url}&branch={branch}``
      ``&urlpath={interface}/{repository name}/{notebook_path}``; nbgitpuller clones the
      repository into a folder named after it, so ``urlpath`` starts with that name.
    * ``"colab"`` (GitHub repositories only):
      ``https://colab.research.google.com/github/{org}/{repo}/blob/{branch}/{notebook_path}``.
    * ``"binder"`` (when ``binderhub_url`` is set): ``{binderhub_url}/v2/gh/{org}/{repo}/{branch}``
      ``?urlpath={interface}/{notebook_path}`` (``/v2/git/{quoted url}/{branch}`` off GitHub).

    ``notebook_interface`` is ``"jupyterlab"`` (``lab/tree``) or ``"classic"`` (``tree``).
    Raises ``ValueError`` naming the setting when a URL, the branch or the interface is not valid.
    """
    repository_url = _check_http_url("repository.url", repository_url)
    if jupyterhub_url:
        jupyterhub_url = _check_http_url("launch_buttons.jupyterhub_url", jupyterhub_url)
    if not branch or any(char.isspace() for char in branch):
        raise ValueError(f"repository.branch must be a branch name, got {branch!r}")
    if notebook_interface not in _NOTEBOOK_INTERFACE_PREFIX:
        raise ValueError(
            f"launch_buttons.notebook_interface must be one of "
            f"{sorted(_NOTEBOOK_INTERFACE_PREFIX)}, got {notebook_interface!r}"
        )
    notebook_path = notebook_path.strip("/")
    if not notebook_path.endswith(".ipynb") or ".." in notebook_path.split("/"):
        raise ValueError(
            f"notebook_path must be a notebook inside the repository, got {notebook_path!r}"
        )
    prefix = _NOTEBOOK_INTERFACE_PREFIX[notebook_interface]
    repository_name = posixpath.basename(urlsplit(repository_url).path).removesuffix(".git")
    query = urlencode(
        {"repo": repository_url, "branch": branch,
         "urlpath": f"{prefix}/{repository_name}/{notebook_path}"},
        safe="/",
    )
    urls = {"hub": f"{jupyterhub_url}/hub/user-redirect/git-pull?{query}"} if jupyterhub_url else {}
    github = _github_org_repo(repository_url)
    if github:
        org, repo = github
        urls["colab"] = f"{COLAB_URL}/github/{org}/{repo}/blob/{branch}/{notebook_path}"
    if binderhub_url:
        binderhub_url = _check_http_url("launch_buttons.binderhub_url", binderhub_url)
        if github:
            binder_repo = f"gh/{org}/{repo}/{branch}"
        else:
            binder_repo = f"git/{quote(repository_url, safe='')}/{branch}"
        binder_query = urlencode({"urlpath": f"{prefix}/{notebook_path}"}, safe="/")
        urls["binder"] = f"{binderhub_url}/v2/{binder_repo}?{binder_query}"
    return urls


def _launch_settings(config) -> dict[str, str]:
    """The launch settings of ``_config.yml``, as Jupyter Book hands them to the theme."""
    theme = config.html_theme_options
    buttons = theme.get("launch_buttons", {})
    return {
        "repository_url": theme.get("repository_url", ""),
        "branch": theme.get("repository_branch", "") or "main",
        "jupyterhub_url": buttons.get("jupyterhub_url", ""),
        "binderhub_url": buttons.get("binderhub_url", ""),
        "notebook_interface": buttons.get("notebook_interface", "jupyterlab"),
    }


def repository_is_set(repository_url: str) -> bool:
    """Whether ``repository.url`` names a course's own repository: not empty and not the
    placeholder ``https://github.com/YOUR-ORGANISATION/...`` that the project ships with. Every
    launch link opens a notebook from that repository, so without it the site renders none."""
    return bool(repository_url.strip()) and PLACEHOLDER_ORGANISATION not in repository_url


class LaunchAssignment(SphinxDirective):
    """``{launch-assignment} <id>``: links that open ``exercises/<id>/<id>.ipynb``."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        assignment = self.arguments[0]
        if not _ASSIGNMENT_ID.fullmatch(assignment):
            raise self.error(
                f"launch-assignment: {assignment!r} is not an assignment id (letters, digits, "
                "'_' or '-', the folder name under exercises/)"
            )
        notebook_path = f"exercises/{assignment}/{assignment}.ipynb"
        repo_root = Path(self.env.srcdir)
        if not (repo_root / notebook_path).is_file():
            raise self.error(
                f"launch-assignment: {notebook_path} does not exist; release the assignment "
                f"first (python -m cnnbook.grading.release {assignment}) or fix the id"
            )
        self.env.note_dependency(str(repo_root / "_config.yml"))
        settings = _launch_settings(self.config)

        box = nodes.container(classes=["cnnbook-launch"], ids=[f"launch-{assignment}"])
        title = nodes.paragraph(classes=["cnnbook-launch-title"])
        title += nodes.strong(text=f"Assignment {assignment}")
        title += nodes.Text(": the exercises of this chapter, in ")
        title += nodes.literal(text=notebook_path)
        title += nodes.Text(".")
        box += title

        links = nodes.paragraph(classes=["cnnbook-launch-links"])
        box += links
        if not repository_is_set(settings["repository_url"]):
            # the shipped placeholder: a link would lead nowhere, so the box says what to set
            links += nodes.Text("This build of the site names no course repository, so it has no "
                                "launch links. A course sets ")
            links += nodes.literal(text="repository: url")
            links += nodes.Text(" (its public copy without solutions) and ")
            links += nodes.literal(text="launch_buttons: jupyterhub_url")
            links += nodes.Text(" in ")
            links += nodes.literal(text="_config.yml")
            links += nodes.Text("; students then open the notebook from here on the course hub. "
                                "Meanwhile, fetch it from the hub's ")
            links += nodes.emphasis(text="Assignments")
            links += nodes.Text(" page (nbgrader), or run it from a clone of the repository.")
            return [box]
        try:
            urls = assignment_launch_urls(notebook_path=notebook_path, **settings)
        except ValueError as error:
            raise self.error(f"launch-assignment: {error}") from error

        alternatives = [(name, urls[key]) for name, key in (("Colab", "colab"),
                                                            ("Binder", "binder")) if key in urls]
        if "hub" in urls:
            links += self._link("Open it on the course hub", urls["hub"], "hub")
            if alternatives:
                links += nodes.Text(", or try it on ")
        elif alternatives:
            links += nodes.Text("Try it on ")
        else:
            links += nodes.Text("Open it from a clone of the course repository")
        for index, (name, url) in enumerate(alternatives):
            if index:
                links += nodes.Text(" or ")
            links += self._link(name, url, name.lower())
        links += nodes.Text(". For a grade, fetch it and submit it from the hub's ")
        links += nodes.emphasis(text="Assignments")
        links += nodes.Text(" page (nbgrader).")
        if "colab" in urls:
            links += nodes.Text(" Colab needs the course's package first: ")
            links += nodes.literal(text=f"%pip install git+{settings['repository_url']}")
            links += nodes.Text(".")
        return [box]

    @staticmethod
    def _link(text: str, url: str, kind: str) -> nodes.reference:
        return nodes.reference(text, text, refuri=url, classes=[f"cnnbook-launch-{kind}"])


def _check_launch_settings(app: Sphinx, config) -> None:
    """Fail the build early, naming the setting, when a launch URL in _config.yml is malformed;
    turn the theme's launch menu off while the repository is the placeholder (its links would lead
    nowhere); then give pages the settings as MyST substitutions (``{{ repository_link }}``,
    ``{{ hub_link }}``), so prose never repeats a URL and names none that is not set."""
    settings = _launch_settings(config)
    repository_set = repository_is_set(settings["repository_url"])
    if repository_set:
        try:
            assignment_launch_urls(notebook_path="exercises/x/x.ipynb", **settings)
        except ValueError as error:
            raise ConfigError(str(error)) from error
    else:
        theme = dict(config.html_theme_options)
        theme["launch_buttons"] = {key: ("" if key.endswith("_url") else value)
                                   for key, value in theme.get("launch_buttons", {}).items()}
        config.html_theme_options = theme
    repository = settings["repository_url"].rstrip("/")
    hub = settings["jupyterhub_url"].rstrip("/")
    substitutions = dict(config.myst_substitutions or {})
    substitutions.setdefault("repository_link", f"[{repository}]({repository})" if repository_set
                             else "the course's repository (this build names none)")
    substitutions.setdefault("hub_link", f"[{hub}]({hub})" if repository_set and hub
                             else "its address comes from your course")
    config.myst_substitutions = substitutions


def _mathjax_source(app: Sphinx) -> Path:
    return Path(app.srcdir) / "node_modules" / "mathjax" / "es5"


def _check_mathjax(app: Sphinx) -> None:
    """The MathJax file that ``mathjax_path`` names must be in node_modules before the build."""
    if app.builder.format != "html":
        return
    mathjax_path = app.config.mathjax_path or ""
    if "://" in mathjax_path or not mathjax_path.startswith("mathjax/"):
        raise ConfigError(
            f"mathjax_path is {mathjax_path!r}: set it to mathjax/tex-mml-chtml.js in _config.yml "
            "(sphinx: config:), so that MathJax is served with the site instead of a CDN"
        )
    bundle = _mathjax_source(app) / mathjax_path.removeprefix("mathjax/")
    if not bundle.is_file():
        raise ExtensionError(
            f"{bundle} is missing: install the npm packages of package.json first "
            "(`make system`, or `npm ci` in the repository root)"
        )


def _copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    """Copy MathJax's ES5 build into ``_static/mathjax`` (only the CommonHTML bundle among the
    combined files; the components it loads on demand, fonts included, come with it)."""
    if exception is not None or app.builder.format != "html":
        return
    source = _mathjax_source(app)
    target = Path(app.outdir) / "_static" / "mathjax"
    bundle = posixpath.basename(app.config.mathjax_path)

    def other_bundles(folder: str, names: list[str]) -> set[str]:
        if Path(folder) != source:
            return set()
        return {name for name in names if name.endswith(".js") and name != bundle}

    shutil.copytree(source, target, ignore=other_bundles, dirs_exist_ok=True)
    shutil.copy2(source.parent / "LICENSE", target / "LICENSE")


def _one_copy_of_each_script(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Drop the second copy of inline scripts (see the module docstring, point 3)."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen = set()
    unique = []
    for script in scripts:
        key = (script.filename or "", script.priority, tuple(sorted(script.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app: Sphinx) -> dict:
    app.add_directive("launch-assignment", LaunchAssignment)
    app.connect("config-inited", _check_launch_settings)
    app.connect("builder-inited", _check_mathjax)
    app.connect("build-finished", _copy_mathjax)
    app.connect("html-page-context", _one_copy_of_each_script, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
