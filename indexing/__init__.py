"""Catalog preparation and search: raw AmazonTitles/Alpaca files -> clean Parquet catalog -> hybrid index.

Heavy libraries (pyarrow, faiss, sentence-transformers) are imported inside functions so that
`import indexing` stays fast.
"""

__version__ = "0.1.0"
