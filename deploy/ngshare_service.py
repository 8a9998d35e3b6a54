"""ngshare, the course hub's exchange service (deploy/jupyterhub_config.py starts it with
``CNNBOOK_EXCHANGE_KIND=ngshare``): ``python deploy/ngshare_service.py`` takes ngshare's own
options.

ngshare 0.6.0 (the newest release) creates an assignment or a submission by setting its
many-to-one relationship (``Assignment(name, course)`` sets ``assignment.course``) and relied on
SQLAlchemy 1.x's backref cascade to put the new row into the course's session. SQLAlchemy 2.0
removed that cascade: the row is left out of the session with only a warning ("Object of type
<Assignment> not in session, add operation along 'Course.assignments' will not proceed"), so
every release and submission would be lost. Before it runs ngshare, this launcher listens, with
SQLAlchemy's public attribute events, to every many-to-one relationship of ngshare's models and
adds the object being attached to the session its parent is in: what the old cascade did.

Two more changes to what ngshare does on its own:

* ngshare accepts any token that the hub's ``/hub/api/user`` accepts, so a token a user gave
  to some other service (with the ``identify`` scope only) would act as that user in ngshare.
  Here a request's token must belong to a user and carry ``access:services!service=ngshare``
  (``access:services`` for an admin's token): the users' and their servers' tokens do
  (deploy/jupyterhub_config.py).
* ngshare also takes a token from a login cookie of its own web pages, set for every path of
  the hub's address without HttpOnly: a student's server could read an instructor's. Here only
  the ``Authorization`` header counts (ngshare_exchange and ngshare-course-management send it);
  ngshare's web pages are not used.
* ngshare listens on every interface; ``--bind HOST`` (taken out before ngshare's own options)
  chooses the address: 127.0.0.1 for the demonstration hub.

:data:`CHECKED_WITH` names the versions ``tests/test_hub.py`` ran it with; others get a warning
(ngshare's models or SQLAlchemy's events may have changed).
"""

from __future__ import annotations

import importlib.metadata
import sys
import warnings

from sqlalchemy import event, inspect
from sqlalchemy.orm import RelationshipDirection, object_session

CHECKED_WITH = {"ngshare": "0.6.0", "SQLAlchemy": "2.1.9"}


def _join_parent_session(target, value, oldvalue, initiator):
    session = object_session(value) if value is not None else None
    if session is not None and object_session(target) is None:
        session.add(target)
    return value


def restore_backref_cascade(models) -> list[str]:
    """Listen to every many-to-one relationship of the mapped classes in the module ``models``;
    returns the ``Class.attribute`` names it listens to."""
    listened = []
    for name in dir(models):
        mapped = getattr(models, name)
        try:
            mapper = inspect(mapped)
        except Exception:  # not a mapped class
            continue
        if not hasattr(mapper, "relationships") or mapper.class_ is not mapped:
            continue
        for relationship in mapper.relationships:
            if relationship.direction is RelationshipDirection.MANYTOONE:
                event.listen(getattr(mapped, relationship.key), "set", _join_parent_session,
                             retval=True)
                listened.append(f"{name}.{relationship.key}")
    return sorted(listened)


SCOPE = "access:services!service=ngshare"


def may_use_ngshare(model: dict | None) -> bool:
    """Whether the hub's answer to ``/hub/api/user`` for a request's token lets it act in ngshare:
    a user's token with :data:`SCOPE` (or ``access:services``, every service)."""
    if not isinstance(model, dict) or model.get("kind", "user") != "user":
        return False
    scopes = model.get("scopes") or []
    return SCOPE in scopes or "access:services" in scopes


def require_scope(handler_class) -> None:
    """Make ``handler_class.user_for_token`` (ngshare's) refuse a token :func:`may_use_ngshare`
    does not allow: the request is then anonymous, which ngshare refuses."""
    original = handler_class.user_for_token

    def user_for_token(self, token):
        model = original(self, token)
        return model if may_use_ngshare(model) else None

    handler_class.user_for_token = user_for_token


def token_from_header(headers) -> str | None:
    """The token of an ``Authorization: token <token>`` header, else None."""
    scheme, _, token = str(headers.get("Authorization", "")).partition(" ")
    return token.strip() or None if scheme.lower() == "token" else None


def header_tokens_only(handler_class) -> None:
    """Make ``handler_class.get_current_token`` (ngshare's) read the request's header alone."""
    handler_class.get_current_token = lambda self: token_from_header(self.request.headers)


def bind_address(argv: list[str]) -> tuple[str | None, list[str]]:
    """``--bind HOST`` (or ``--bind=HOST``) taken out of ``argv``: (HOST or None, the rest)."""
    host, rest, arguments = None, [], iter(argv)
    for argument in arguments:
        if argument == "--bind":
            host = next(arguments, None)
        elif argument.startswith("--bind="):
            host = argument.split("=", 1)[1]
        else:
            rest.append(argument)
    return host, rest


def main(argv: list[str] | None = None) -> None:
    for package, checked in CHECKED_WITH.items():
        version = importlib.metadata.version(package)
        if version != checked:
            warnings.warn(f"deploy/ngshare_service.py was checked with {package} {checked}, "
                          f"this is {version}: run tests/test_hub.py", stacklevel=1)
    from ngshare import ngshare
    from ngshare.database import database
    from tornado.httpserver import HTTPServer

    host, arguments = bind_address(sys.argv[1:] if argv is None else argv)
    restore_backref_cascade(database)
    require_scope(ngshare.MyRequestHandler)
    header_tokens_only(ngshare.MyRequestHandler)
    if host is not None:
        class BoundServer(HTTPServer):
            def listen(self, port, address="", **kwargs):  # ngshare passes "0.0.0.0"
                super().listen(port, host, **kwargs)

        ngshare.HTTPServer = BoundServer
    ngshare.main(arguments)


if __name__ == "__main__":
    main()
