"""`productqa prepare` / `export` from the command line: bad input gives one clear line, never a traceback."""

import json
import subprocess
import sys

import pytest

from tests.conftest import DEMO_RAW, ROOT


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "ui.cli", *args], capture_output=True, text=True, cwd=cwd)


def put(name, data):
    """A factory writing `data` to `name` inside the given folder."""

    def make(d):
        (d / name).write_bytes(data)
        return d / name

    return make


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda d: d / "missing.json", "no such file"),
        (lambda d: d, "is a directory"),
        (put("bin.json", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), "binary"),
        (put("empty.json", b""), "file is empty"),
        (put("blank.json", b"\n  \n"), "file is empty"),
        (put("junk.json", b"hello\nworld\n"), "no valid JSON records"),
    ],
    ids=["missing", "directory", "binary", "empty", "whitespace-only", "nothing-valid"],
)
def test_bad_input_is_one_clear_line(tmp_path, make_input, message):
    src = tmp_path / "in"
    src.mkdir()
    path = make_input(src)
    r = run("prepare", "--input", str(path), "--out", str(tmp_path / "out"), "--quiet")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert message in r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert not (tmp_path / "out" / "catalog.parquet").exists()


def test_prepare_and_export_demo(tmp_path):
    r = run("prepare", "--input", str(DEMO_RAW), "--out", str(tmp_path / "cat"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "read →" in r.stdout and "kept" in r.stdout
    r = run("export", "--catalog", str(tmp_path / "cat"), "--format", "openai", "--out", str(tmp_path / "o.jsonl"),
            "--quiet")
    assert r.returncode == 0, r.stderr
    first = json.loads((tmp_path / "o.jsonl").read_text().splitlines()[0])
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]


def test_export_without_catalog_is_clear(tmp_path):
    r = run("export", "--catalog", str(tmp_path / "nope"), "--format", "alpaca", "--out", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "no catalog.parquet" in r.stderr and "Traceback" not in r.stderr


def test_every_subcommand_has_help():
    from ui.cli import COMMANDS

    assert run("--help").returncode == 0
    for name in COMMANDS:
        r = run(name, "--help")
        assert r.returncode == 0 and "usage: productqa " + name in r.stdout
