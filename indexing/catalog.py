"""Read a catalog written by `productqa prepare` (a folder with catalog.parquet + stats.json).

    from indexing.catalog import read_catalog
    df = read_catalog("data/catalog")        # pandas DataFrame: uid, title, content, has_description
    for batch in iter_catalog("data/catalog", ["uid", "content"]): ...   # streamed, for catalogs of any size

A product without a description (a title-only product: `has_description` false, content "") is a product
all the same: search finds it by title. Training pairs and answer metrics need a description: `described`.
"""

from __future__ import annotations

import json
from pathlib import Path

from indexing.errors import UserError


def catalog_file(path: str | Path) -> Path:
    """The catalog.parquet inside a catalog folder (or the file itself)."""
    path = Path(path)
    f = path / "catalog.parquet" if path.is_dir() else path
    if not f.exists():
        hint = " (run `productqa prepare` first)" if path.is_dir() or not path.exists() else ""
        raise UserError(f"{path}: no catalog.parquet found{hint}")
    return f


def read_catalog(path: str | Path, columns: list[str] | None = None):
    """The whole catalog as a pandas DataFrame (uid, title, content)."""
    import pyarrow.parquet as pq

    f = catalog_file(path)
    try:
        return pq.read_table(f, columns=columns).to_pandas()
    except Exception as e:  # truncated / not parquet
        raise UserError(f"{f}: cannot read catalog ({type(e).__name__}: {e})") from None


def iter_catalog(path: str | Path, columns: list[str], batch_size: int = 65_536):
    """The catalog as pyarrow record batches of `columns`, streamed: never the whole table in memory."""
    import pyarrow.parquet as pq

    yield from pq.ParquetFile(catalog_file(path)).iter_batches(batch_size=batch_size, columns=columns)


def described(docs):
    """The rows of a catalog or index DataFrame that have a description (content not empty)."""
    return docs[docs["content"].str.len() > 0]


def described_rows(path: str | Path) -> int:
    """Number of products with a description (stats.json's count; a catalog without one: every row, as
    `prepare` before title-only products were kept wrote them)."""
    n = catalog_stats(path).get("with_description")
    return int(n) if n is not None else catalog_rows(path)


def catalog_rows(path: str | Path) -> int:
    """Number of products, from the Parquet footer (nothing else read)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(catalog_file(path)).metadata.num_rows


def catalog_stats(path: str | Path) -> dict:
    """stats.json of a catalog (empty dict if the catalog came without one)."""
    f = catalog_file(path).parent / "stats.json"
    return json.loads(f.read_text()) if f.exists() else {}


def catalog_fingerprint(path: str | Path) -> str:
    """Content fingerprint recorded by prepare; falls back to hashing the Parquet file."""
    fp = catalog_stats(path).get("fingerprint")
    if fp:
        return fp
    from indexing.runtime import digest

    return digest(catalog_file(path))
