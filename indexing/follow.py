"""A loaded index that follows its folder: a serving process picks up each committed version.

    from indexing.follow import Follower
    index = Follower("data/index", reload_seconds=5)   # index.current: the Index serving now

`productqa index add/remove/build` commit new versions of the index folder (indexing/store.py).
A follower polls CURRENT every `reload_seconds` in a background thread; when it names a newer
version, that version is loaded beside the one serving (sharing its embedding model when both were
built with the same one) and swapped in by one assignment. A question keeps the `Index` it started
with (take `index.current` once per question), so it never sees half of an update; the next one sees
the new version. A version that fails to load is reported once and the old one keeps serving.
Memory: two versions are in memory while the new one loads.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

RELOAD_SECONDS = 5.0  # how often a serving process looks for a new version (Milvus: within 5 s)


class Follower:
    """`current` is the Index serving now; attribute access is delegated to it."""

    def __init__(self, root: str | Path, reload_seconds: float = RELOAD_SECONDS, device: str | None = None,
                 model: str | Path | None = None, log=None):
        from indexing.search import Index

        self.root, self.reload_seconds, self._device, self._model = Path(root), reload_seconds, device, model
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.current = Index(self.root, device=device, model=model)
        self._failed: int | None = None  # a version that did not load: not retried until CURRENT moves on
        self._check_lock, self._stop = threading.Lock(), threading.Event()
        self._thread = None
        if reload_seconds and reload_seconds > 0:
            self._thread = threading.Thread(target=self._poll, name="productqa-index-follow", daemon=True)
            self._thread.start()

    def check(self) -> bool:
        """Load the live version if it is not the one serving; True when a new one was swapped in."""
        from indexing.errors import UserError
        from indexing.search import Index
        from indexing.store import current_version

        with self._check_lock:
            try:
                n = current_version(self.root)
            except (UserError, OSError) as e:
                return self._note(-1, f"note: {e}; still serving version {self.current.version}")
            if n is None or n == self.current.version or n == self._failed:
                return False
            try:
                new = Index(self.root, device=self._device, model=self._model, like=self.current)
            except Exception as e:  # noqa: BLE001 - whatever broke the new version, the old one keeps serving
                return self._note(n, f"note: {self.root} version {n} did not load ({type(e).__name__}: {e}); "
                                     f"still serving version {self.current.version}")
            old, self.current, self._failed = self.current, new, None  # the swap: one assignment
            self._log(f"index {self.root}: now serving version {new.version} ({len(new):,} products; "
                      f"was version {old.version}, {len(old):,})")
            return True

    def _note(self, n, msg: str) -> bool:
        if n != self._failed:  # once per failure, not every poll
            self._log(msg)
        self._failed = n
        return False

    def _poll(self) -> None:
        while not self._stop.wait(self.reload_seconds):
            self.check()

    def close(self) -> None:
        self._stop.set()

    def __getattr__(self, name):  # only for names a Follower does not have itself
        if name == "current":
            raise AttributeError(name)
        return getattr(self.current, name)

    def __len__(self) -> int:
        return len(self.current)

