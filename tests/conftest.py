"""Shared fixtures: the shipped demo catalog, the real records in ../shared (skipped when absent)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_RAW = ROOT / "indexing" / "demo" / "demo_trn.jsonl"
SHARED = Path(os.environ.get("PRODUCTQA_SHARED", ROOT.parent / "shared")) / "data" / "amazontitles"


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED / "trn_first500_title_content_alpaca.json").exists():
        pytest.skip(f"real records not found at {SHARED} (../shared is absent)")
    return SHARED


def write_jsonl(path: Path, records: list, raw_lines: list[str] = ()) -> Path:
    """Write records (dicts) as JSON lines, then any raw (possibly malformed) lines."""
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        for line in raw_lines:
            f.write(line + "\n")
    return path


@pytest.fixture(scope="session")
def demo_catalog(tmp_path_factory) -> Path:
    """The demo catalog, prepared once per test session."""
    from indexing.prepare import prepare

    out = tmp_path_factory.mktemp("demo_catalog")
    prepare([DEMO_RAW], out, progress=False, workers=1)
    return out
