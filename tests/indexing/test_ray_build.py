"""`index build --engine ray`: a real local Ray (2 CPUs) in a loopback-only network namespace gives the
same vectors and ids as the default single-process build, and listens on 127.0.0.1 only."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from indexing.build import BuildConfig, build_index
from indexing.search import load_index
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def vectors(index, ids) -> np.ndarray:
    return np.stack([index.reconstruct(int(i)) for i in ids])


def test_ray_engine_matches_the_default_path(demo_catalog, tmp_path):
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2) for a loopback-only network namespace")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here ({probe.stderr.strip()[:120]})")
    ray_out, local_out, listeners = tmp_path / "ray", tmp_path / "local", tmp_path / "listeners.txt"
    script = (f"ip link set lo up && {sys.executable} -m ui.cli index build --catalog {demo_catalog} "
              f"--out {ray_out} --engine ray --shard-size 64 --fusion rule --quiet & pid=$!; "
              f"while kill -0 $pid 2>/dev/null; do ss -ltnH >> {listeners}; sleep 0.5; done; wait $pid")
    env = {**os.environ, "HOME": str(tmp_path)}  # whatever Ray writes under ~ stays in the test's folder
    r = subprocess.run(["unshare", "-n", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    # no learned fusion in either (--fusion rule): what is compared is what the engines embed
    build_index(BuildConfig(catalog=str(demo_catalog), out=str(local_out), shard_size=64, ranker=False, progress=False))
    a, b = load_index(ray_out), load_index(local_out)
    assert a.meta["build"]["engine"] == "ray" and b.meta["build"]["engine"] == "local"
    assert a.docs["uid"].tolist() == b.docs["uid"].tolist()
    assert a.passages.equals(b.passages)
    for index_a, index_b, ids in ((a.title_index, b.title_index, a.docs["id"]),
                                  (a.passage_index, b.passage_index, a.passages["pid"])):
        Xa, Xb = vectors(index_a, ids), vectors(index_b, ids)
        cos = (Xa * Xb).sum(1)
        assert cos.min() >= 0.999, cos.min()
    # Ray's services listened on the loopback address only (the last: IPv4 loopback, IPv6 form)
    addrs = {line.split()[3].rsplit(":", 1)[0] for line in listeners.read_text().splitlines() if line.strip()}
    assert addrs and addrs <= {"127.0.0.1", "[::1]", "[::ffff:127.0.0.1]"}, addrs
