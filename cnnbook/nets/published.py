"""Published numbers the book cites, read from small CSV files with their sources.

Each file in ``cnnbook/nets/published_data/`` holds one table from papers or documentation, with a
``source`` column naming where each row comes from (a key of ``book/references.bib`` or a
document). The book draws its tables and plots from them and ``tests/`` checks the code's own
computations against them.
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).with_name("published_data")


def available() -> list[str]:
    """Names of the published tables, without the ``.csv`` ending."""
    return sorted(path.stem for path in DATA_DIR.glob("*.csv"))


def load(name: str):
    """The published table ``name`` as a pandas DataFrame (lines starting with ``#`` are notes)."""
    import pandas as pd  # slow to import: only when a table is read, not for available()

    path = DATA_DIR / f"{name}.csv"
    if not path.is_file():
        raise ValueError(f"no published table {name!r}; available: {', '.join(available())}")
    return pd.read_csv(path, comment="#")
