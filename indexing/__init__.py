"""Catalog preparation and search: raw AmazonTitles/Alpaca files -> clean Parquet catalog -> hybrid index.

Heavy libraries (pyarrow, faiss, sentence-transformers) are imported inside functions so that
`import indexing` stays fast.
"""

from importlib.metadata import PackageNotFoundError, version

try:  # one version string: pyproject.toml's, as installed (`pip install -e .` in make)
    __version__ = version("productqa")
except PackageNotFoundError:  # a checkout that was never installed
    __version__ = "0+unknown"
