"""publish_folder (indexing/runtime.py): an artifact folder replaced in one atomic step, even when its writer is
killed between the steps (a real SIGKILL, in a child process)."""

import subprocess
import sys
import textwrap

import pytest

from indexing.runtime import publish_folder, temp_beside
from tests.conftest import ROOT


def make(folder, text):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(text)
    (folder / "weights.bin").write_bytes(text.encode() * 1000)


def complete(folder) -> str:
    text = (folder / "config.json").read_text()
    assert (folder / "weights.bin").read_bytes() == text.encode() * 1000
    return text


def test_replaces_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "merged"
    for text in ("v1", "v2", "v3"):
        tmp = temp_beside(target)
        make(tmp, text)
        publish_folder(tmp, target)
        assert complete(target) == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_without_the_exchange_it_still_replaces(tmp_path, monkeypatch):
    import indexing.runtime as runtime

    target = tmp_path / "merged"
    make(target, "old")
    monkeypatch.setattr(runtime, "_exchange", lambda a, b: False)  # a filesystem without renameat2
    tmp = temp_beside(target)
    make(tmp, "new")
    publish_folder(tmp, target)
    assert complete(target) == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


CHILD = """
import os, shutil, signal, sys
from pathlib import Path
import indexing.runtime as runtime
target = Path(sys.argv[1])
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
if sys.argv[2] == "before-swap":
    runtime._exchange = die
else:  # after the swap, before the old folder is removed
    shutil.rmtree = die
tmp = runtime.temp_beside(target)
tmp.mkdir()
(tmp / "config.json").write_text("new")
(tmp / "weights.bin").write_bytes(b"new" * 1000)
runtime.publish_folder(tmp, target)
"""


@pytest.mark.parametrize("when, expect", [("before-swap", "old"), ("after-swap", "new")])
def test_a_writer_killed_between_steps_leaves_a_whole_folder(tmp_path, when, expect):
    target = tmp_path / "merged"
    make(target, "old")
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD), str(target), when], cwd=ROOT, timeout=120)
    assert r.returncode == -9  # really killed, at that step
    assert complete(target) == expect
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "merged"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".merged.tmp-")
    tmp = temp_beside(target)  # the next writer removes what the dead one left
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]
    make(tmp, "next")
    publish_folder(tmp, target)
    assert complete(target) == "next"
