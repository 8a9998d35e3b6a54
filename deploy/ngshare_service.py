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
:data:`CHECKED_WITH` names the versions ``tests/test_hub.py`` ran it with; another ngshare gets a
warning (its models may have changed).
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


def main(argv: list[str] | None = None) -> None:
    version = importlib.metadata.version("ngshare")
    if version != CHECKED_WITH["ngshare"]:
        warnings.warn(f"deploy/ngshare_service.py was checked with ngshare "
                      f"{CHECKED_WITH['ngshare']}, this is {version}: run tests/test_hub.py",
                      stacklevel=1)
    from ngshare import ngshare
    from ngshare.database import database

    restore_backref_cascade(database)
    ngshare.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
