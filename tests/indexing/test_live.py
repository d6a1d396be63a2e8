"""The live catalog: versions, one writer at a time, commits that survive SIGKILL, readers that follow."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from indexing.errors import UserError
from indexing.store import current_version, live_folder, read_meta, versions, writer
from tests.conftest import ROOT, write_jsonl

CLI = [sys.executable, "-m", "ui.cli", "index"]


@pytest.fixture
def live(demo_index, tmp_path):
    """A copy of the demo index in its versioned layout (CURRENT = 1)."""
    dst = tmp_path / "index"
    shutil.copytree(demo_index, dst)
    assert current_version(dst) == 1
    return dst


def products(prefix: str, n: int, words: str = "") -> list[dict]:
    return [{"uid": f"{prefix}{i:06d}", "title": f"{prefix.title()} {words} Gadget Number {i}",
             "content": f"The {prefix.lower()} gadget {i}, {words} edition: a real description {i * 13}."}
            for i in range(n)]


def uids(root) -> set:
    """The live products' uids: base + deltas - tombstones (no encoder needed)."""
    from indexing.delta import read_version
    from indexing.store import open_version

    with open_version(root) as folder:
        return set(read_version(folder, read_meta(folder))["docs"]["uid"])


def test_two_concurrent_adds_both_land(live, tmp_path):
    """Two `index add` at once (held at the lock until both are waiting, so that they really overlap)."""
    a = write_jsonl(tmp_path / "a.jsonl", products("ALPHA", 10))
    b = write_jsonl(tmp_path / "b.jsonl", products("BRAVO", 10))
    n0 = len(uids(live))
    errs = [[], []]
    with writer(live, what="test holder"):
        procs = [subprocess.Popen(CLI + ["add", "--index", str(live), "--input", str(f), "--quiet"], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for f in (a, b)]
        readers = [threading.Thread(target=lambda p=p, e=e: e.extend(p.stderr), daemon=True)
                   for p, e in zip(procs, errs)]
        for t in readers:
            t.start()
        deadline = time.time() + 300
        while time.time() < deadline and not all(any("waiting up to 600s for test holder" in x for x in e)
                                                 for e in errs):
            time.sleep(0.1)
    outs = [p.stdout.read() for p in procs]
    for p, t in zip(procs, readers):
        p.wait(timeout=600)
        t.join(timeout=60)
    assert [p.returncode for p in procs] == [0, 0], (outs, errs)
    assert all(any("waiting up to 600s for test holder" in x for x in e) for e in errs), errs
    got = uids(live)
    assert {r["uid"] for r in products("ALPHA", 10) + products("BRAVO", 10)} <= got and len(got) == n0 + 20
    assert current_version(live) == 3  # one version per add, nothing overwritten
    assert sorted(o.split("(version ")[-1].strip() for o in outs) == ["2)", "3)"], outs
    assert sorted(p.name for p in (live / "versions").iterdir()) == ["3"]


def test_a_second_writer_with_wait_0_fails_in_one_line(live):
    with writer(live, what="test holder"):
        r = subprocess.run(CLI + ["remove", "--index", str(live), "--uid", "X", "--wait", "0"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
        info = versions(live)
        t0 = time.time()
        w = subprocess.run(CLI + ["remove", "--index", str(live), "--uid", "X", "--wait", "1.5"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
        waited = time.time() - t0
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "test holder by pid" in r.stderr and "--wait" in r.stderr
    assert info["writer"].startswith("test holder by pid")
    assert w.returncode == 2 and "waiting up to 1.5s for test holder" in w.stderr and "still holds" in w.stderr
    assert waited >= 1.5
    assert versions(live)["writer"] is None and current_version(live) == 1  # nothing was written
    # with the lock free, the same command runs (X is not in the index: exit 1, no new version)
    r = subprocess.run(CLI + ["remove", "--index", str(live), "--uid", "X", "--wait", "0"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "not in the index: X" in r.stdout and "no new version" in r.stdout


def test_sigkill_inside_a_commit_leaves_the_previous_version_live(live, tmp_path):
    n0 = len(uids(live))
    new = write_jsonl(tmp_path / "many.jsonl", products("KILL", 1500, "long words to make bm25 work harder"))
    p = subprocess.Popen(CLI + ["add", "--index", str(live), "--input", str(new), "--quiet"], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    vdir, seen = live / "versions", None
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and seen is None:
        seen = next((q for q in vdir.iterdir() if ".tmp-" in q.name), None)  # the commit has begun
        time.sleep(0.002)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert seen is not None, "the add ended before its commit could be caught"
    assert current_version(live) == 1 and len(uids(live)) == n0  # the previous version, complete
    read_meta(live)
    # leftovers of killed writers: a temp folder, and a version renamed but never published
    (vdir / "7").mkdir()
    (vdir / "7" / "meta.json").write_text("{}")
    left = {q.name for q in vdir.iterdir()} - {"1"}
    assert left and versions(live)["writer"] is None  # the kernel dropped the dead writer's lock
    from indexing.update import add_products

    r = add_products(live, [write_jsonl(tmp_path / "one.jsonl", products("AFTER", 1))], progress=False)
    assert r["version"] == 2 and r["count"] == n0 + 1  # 7 was never live: cleaned, not counted
    assert sorted(q.name for q in vdir.iterdir()) == ["2"]


def test_readers_never_see_half_a_write(live, tmp_path):
    """Readers open the live version over and over while updates commit and remove old versions."""
    from indexing.delta import read_version
    from indexing.store import open_version
    from indexing.update import add_products, remove_products

    errors, seen, stop = [], set(), threading.Event()

    def read_loop():
        while not stop.is_set():
            try:
                with open_version(live) as folder:
                    meta = read_meta(folder)
                    v = read_version(folder, meta)  # base + deltas - tombstones: every piece of one version
                    assert len(v["docs"]) == meta["count"] == v["titles"].ntotal
                    assert len(v["passages"]) == meta["passages"]["count"] == v["passage_index"].ntotal
                    seen.add(meta["version"])
            except Exception as e:  # noqa: BLE001 - every failure is the test's finding
                errors.append(repr(e))

    t = threading.Thread(target=read_loop)
    t.start()
    try:
        for i in range(3):
            add_products(live, [write_jsonl(tmp_path / f"r{i}.jsonl", products(f"READ{i}X", 3))], progress=False)
            remove_products(live, [f"READ{i}X000000"])
    finally:
        stop.set()
        t.join()
    assert errors == [] and len(seen) >= 3 and current_version(live) == 7


def test_a_follower_serves_the_new_version_within_seconds(live, tmp_path):
    from indexing.follow import Follower
    from indexing.update import add_products

    notes = []
    f = Follower(live, reload_seconds=0.5, log=notes.append)
    try:
        old = f.current
        title = "Zephyrine Quartz Marimba For Toddlers"
        q = f"What is '{title}'?"
        assert f.retrieve(q, k=1)[0].title != title
        add_products(live, [write_jsonl(tmp_path / "z.jsonl", [{"uid": "ZEPH000001", "title": title,
                                                                 "content": "A marimba."}])], progress=False)
        deadline = time.time() + 60
        while time.time() < deadline and f.current.version != 2:
            time.sleep(0.1)
        assert f.current.version == 2 and len(f) == len(old) + 1
        assert f.retrieve(q, k=1)[0].uid == "ZEPH000001"
        assert f.current.model is old.model  # the encoder is shared, not loaded again
        assert old.retrieve(q, k=1)[0].uid != "ZEPH000001"  # a question in flight keeps its version
        assert any("now serving version 2" in n for n in notes)
        # a version that does not load: reported once, the last good one keeps serving
        from indexing.store import write_text_durably

        broken = live / "versions" / "3"
        shutil.copytree(live_folder(live), broken)
        shutil.rmtree(broken / "bm25")
        write_text_durably(live / "CURRENT", "3\n")
        time.sleep(2)
        assert f.current.version == 2 and f.retrieve(q, k=1)[0].uid == "ZEPH000001"
        assert sum("version 3 did not load" in n for n in notes) == 1, notes
    finally:
        f.close()


def test_info_shows_versions_and_writer(live):
    r = subprocess.run(CLI + ["info", "--index", str(live)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "version:    1 (live); on disk: 1" in r.stdout and "writer:     none" in r.stdout
    import json

    r = subprocess.run(CLI + ["info", "--index", str(live), "--json"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert json.loads(r.stdout)["versions"]["current"] == 1


def test_updates_of_a_folder_without_an_index_say_so_and_write_nothing(tmp_path):
    for action in (["compact"], ["remove", "--uid", "X"]):
        r = subprocess.run(CLI + [action[0], "--index", str(tmp_path / "nope"), *action[1:]], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "no index here" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "nope").exists()
    (tmp_path / "bad" / "versions" / "4").mkdir(parents=True)
    (tmp_path / "bad" / "CURRENT").write_text("x\n")
    with pytest.raises(UserError, match=r"CURRENT: corrupt .*versions on disk: 4"):
        writer(tmp_path / "bad").__enter__()
    assert not (tmp_path / "bad" / "writer.lock").exists()


def test_a_folder_being_built_for_the_first_time_says_so(tmp_path):
    root = tmp_path / "new"
    with writer(root, what="index build", create=True):
        with pytest.raises(UserError, match="no index committed here yet .index build by pid"):
            read_meta(root)


KILL_CHILD = """
import os, signal, sys
import indexing.store as store
root, when = sys.argv[1], sys.argv[2]
def die():
    os.kill(os.getpid(), signal.SIGKILL)
if when == "before-pointer":  # versions/N is renamed into place, CURRENT not yet replaced
    durable = store.write_text_durably
    store.write_text_durably = lambda path, text: die() if path.name == store.CURRENT else durable(path, text)
else:  # CURRENT replaced, old versions not yet cleaned
    clean, calls = store._clean, []
    def clean_then_die(r):
        calls.append(1)
        die() if len(calls) == 2 else clean(r)  # the first call is the writer's start
    store._clean = clean_then_die
from indexing.update import remove_products
remove_products(root, ["GONE000000", "GONE000001"])
"""


@pytest.mark.parametrize("when, live_after", [("before-pointer", 1), ("after-pointer", 2)])
def test_sigkill_around_the_pointer_replace(live, tmp_path, when, live_after):
    from indexing.update import add_products

    add_products(live, [write_jsonl(tmp_path / "g.jsonl", products("GONE", 2))], progress=False)
    n = len(uids(live))
    r = subprocess.run([sys.executable, "-c", KILL_CHILD, str(live), when], cwd=ROOT, timeout=300)
    assert r.returncode == -9
    assert current_version(live) == live_after + 1  # the add above made version 2
    assert len(uids(live)) == (n if when == "before-pointer" else n - 2)  # a complete version, old or new
    on_disk = sorted(int(p.name) for p in (live / "versions").iterdir() if p.name.isdigit())
    assert on_disk == ([2, 3] if when == "before-pointer" else [2, 3])  # an unpublished 3, or an uncleaned 2
    r = add_products(live, [write_jsonl(tmp_path / "n.jsonl", products("NEXT", 1))], progress=False)
    assert r["version"] == current_version(live) == live_after + 2  # the next writer cleans up, carries on
    assert len(uids(live)) == (n + 1 if when == "before-pointer" else n - 1)
    assert sorted(p.name for p in (live / "versions").iterdir()) == [str(r["version"])]


def test_a_remove_past_the_threshold_compacts_in_the_background(live):
    """The CLI says it started a background compaction and returns; the compaction commits the next
    version (the log says so); --no-compact with --compact-now is refused by the parser."""
    from indexing.store import COMPACT_LOG
    from indexing.update import COMPACT_FRACTION

    gone = sorted(uids(live))[: int(COMPACT_FRACTION * 376) + 1]
    r = subprocess.run(CLI + ["remove", "--index", str(live), "--uid", *gone], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "(version 2; compacting in the background, pid " in r.stdout, r.stdout + r.stderr
    deadline = time.monotonic() + 180
    while current_version(live) != 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert current_version(live) == 3, (live / COMPACT_LOG).read_text()
    assert "tombstones" not in read_meta(live) and not uids(live) & set(gone)
    r = subprocess.run(CLI + ["remove", "--index", str(live), "--uid", "X", "--no-compact", "--compact-now"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not allowed with argument" in r.stderr
    r = subprocess.run([sys.executable, "-m", "indexing.index_cli", "compact", "--index", str(live / "nope")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no index here" in r.stderr and "Traceback" not in r.stderr, r.stderr
