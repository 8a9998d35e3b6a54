"""The launch URLs of the site's assignment boxes (book/_ext/cnnbook_site.py), against the link
formats that nbgitpuller, Colab and Binder document, and the errors a malformed setting of
``_config.yml`` raises. Fast: no build; tests/test_site_browser.py checks the built site's links."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))
from cnnbook_site import assignment_launch_urls, repository_is_set  # noqa: E402

SETTINGS = {
    "repository_url": "https://github.com/example-org/cnnbook",
    "branch": "main",
    "jupyterhub_url": "https://hub.example.edu/",
    "binderhub_url": "https://mybinder.org",
    "notebook_interface": "jupyterlab",
}


def test_hub_link_is_nbgitpullers_git_pull_url():
    # nbgitpuller's documented link: <hub>/hub/user-redirect/git-pull?repo=..&branch=..&urlpath=..,
    # urlpath relative to the user's home, where nbgitpuller clones into a folder named as the repo.
    urls = assignment_launch_urls(notebook_path="exercises/sizing/sizing.ipynb", **SETTINGS)
    hub = urlsplit(urls["hub"])
    assert (hub.scheme, hub.netloc, hub.path) == (
        "https", "hub.example.edu", "/hub/user-redirect/git-pull")
    assert parse_qs(hub.query, strict_parsing=True) == {
        "repo": ["https://github.com/example-org/cnnbook"],
        "branch": ["main"],
        "urlpath": ["lab/tree/cnnbook/exercises/sizing/sizing.ipynb"],
    }


def test_colab_and_binder_links_follow_their_documented_forms():
    urls = assignment_launch_urls(notebook_path="exercises/resnet/resnet.ipynb", **SETTINGS)
    assert urls["colab"] == ("https://colab.research.google.com/github/example-org/cnnbook/blob/"
                             "main/exercises/resnet/resnet.ipynb")
    assert urls["binder"] == ("https://mybinder.org/v2/gh/example-org/cnnbook/main"
                              "?urlpath=lab/tree/exercises/resnet/resnet.ipynb")


def test_classic_interface_and_a_repository_off_github():
    settings = dict(SETTINGS, repository_url="https://git.example.edu/course/cnnbook.git",
                    notebook_interface="classic")
    urls = assignment_launch_urls(notebook_path="exercises/sizing/sizing.ipynb", **settings)
    assert parse_qs(urlsplit(urls["hub"]).query)["urlpath"] == [
        "tree/cnnbook/exercises/sizing/sizing.ipynb"]
    assert "colab" not in urls  # Colab opens notebooks from GitHub only
    assert urls["binder"] == ("https://mybinder.org/v2/git/"
                              "https%3A%2F%2Fgit.example.edu%2Fcourse%2Fcnnbook.git/main"
                              "?urlpath=tree/exercises/sizing/sizing.ipynb")


def test_no_binder_link_without_a_binderhub():
    urls = assignment_launch_urls(notebook_path="exercises/sizing/sizing.ipynb",
                                  **dict(SETTINGS, binderhub_url=""))
    assert sorted(urls) == ["colab", "hub"]


def test_no_hub_link_without_a_hub():
    urls = assignment_launch_urls(notebook_path="exercises/sizing/sizing.ipynb",
                                  **dict(SETTINGS, jupyterhub_url=""))
    assert sorted(urls) == ["binder", "colab"]


@pytest.mark.parametrize(("url", "is_set"), [
    ("https://github.com/YOUR-ORGANISATION/cnnbook", False),  # the shipped placeholder
    ("", False),
    ("  ", False),
    ("https://github.com/example-org/cnnbook", True),
    ("https://git.example.edu/course/cnnbook.git", True),
])
def test_only_a_courses_own_repository_counts_as_set(url, is_set):
    assert repository_is_set(url) is is_set


@pytest.mark.parametrize(("setting", "value", "named"), [
    ("repository_url", "github.com/example-org/cnnbook", "repository.url"),
    ("repository_url", "https://github.com/example-org", "repository.url"),
    ("jupyterhub_url", "hub.example.edu", "launch_buttons.jupyterhub_url"),
    ("binderhub_url", "mybinder.org", "launch_buttons.binderhub_url"),
    ("branch", "", "repository.branch"),
    ("branch", "my branch", "repository.branch"),
    ("notebook_interface", "retro", "launch_buttons.notebook_interface"),
])
def test_a_malformed_setting_is_named_in_the_error(setting, value, named):
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        assignment_launch_urls(notebook_path="exercises/sizing/sizing.ipynb",
                               **dict(SETTINGS, **{setting: value}))


@pytest.mark.parametrize("notebook_path", ["exercises/sizing", "../secrets/x.ipynb"])
def test_the_notebook_must_be_a_notebook_inside_the_repository(notebook_path):
    with pytest.raises(ValueError, match="notebook_path"):
        assignment_launch_urls(notebook_path=notebook_path, **SETTINGS)
