"""Embed an index build's shards with Ray Data: for catalogs that outgrow one machine.

    productqa index build --catalog data/catalog --out data/index --engine ray                 # local Ray
    productqa index build --catalog data/catalog --out data/index --engine ray --ray-address auto  # a cluster

The products still to embed are written as one Parquet file per shard into the build folder, then
`ray.data.read_parquet(...).map_batches(Embedder, ...)` embeds their titles and description passages
on a pool of actors (each loads the model once; `num_gpus=1` per actor on clusters with GPUs). The
driver collects the vectors and writes each shard to the build folder the moment all of its products
are back, exactly as the local engine does, so resuming, checking and assembling the index are the
same whichever engine ran. Needs the `ray` extra: `pip install -e '.[ray]'`.

Without --ray-address a local Ray starts on this machine bound to 127.0.0.1 only (its node address
is the loopback one, so no service listens on other interfaces; no dashboard) and stops at the end.
On a cluster, the catalog's build folder must be on storage every node can read (NFS, or pass a
shared path as --out).
"""

from __future__ import annotations

import os


class Embedder:
    """A Ray Data actor: loads the encoders once (titles; passages, when they have vectors), embeds batches
    of products."""

    def __init__(self, ident: dict, passage_ident: dict | None, device: str | None, precision: str,
                 batch_size: int, embed: str, passage_tokens: int | None, passage_split: str = "tokens"):
        from indexing.embed import base_model_path, load_kind
        from indexing.texts import Splitter

        # indexing.embed.encoder_identity: the same encoders as the driver's, hash for hash
        self.model = load_kind(ident, device)
        self.passage_model = None
        if passage_ident is not None:
            self.passage_model = (self.model if passage_ident["hash"] == ident["hash"]
                                  else load_kind(passage_ident, device))
        self.precision, self.batch_size, self.embed = precision, batch_size, embed
        self.splitter = Splitter(passage_tokens, base_model_path(ident), passage_split) if passage_tokens else None

    def __call__(self, batch: dict) -> dict:
        """{"id", "title", "content"} -> {"id", "pno" (-1: the title, else the passage's number), "vec" (a title
        row's vector), "pvec" (a passage row's; the encoders may differ in dimension, so two columns)}."""
        import numpy as np

        from indexing.embed import embed
        from indexing.texts import dense_texts

        ids = batch["id"]
        X = embed(self.model, dense_texts(batch["title"], batch["content"], self.embed), self.batch_size,
                  self.precision)
        P = np.zeros((0, 0), dtype=np.float32)
        pid, pno = [], []
        if self.splitter is not None and self.passage_model is not None:
            texts = []
            for i, c in zip(ids, batch["content"]):
                for n, (s, e) in enumerate(self.splitter.spans(c)):
                    pid.append(i)
                    pno.append(n)
                    texts.append(c[s:e])
            if texts:
                P = embed(self.passage_model, texts, self.batch_size, self.precision)
        dp = P.shape[1] if len(P) else 1
        vec = np.concatenate([X, np.zeros((len(pid), X.shape[1]), dtype=np.float32)])
        pvec = np.concatenate([np.zeros((len(ids), dp), dtype=np.float32), P.reshape(len(pid), dp)])
        return {"id": np.concatenate([ids, np.asarray(pid, dtype=np.int64)]).astype(np.int64),
                "pno": np.concatenate([np.full(len(ids), -1), np.asarray(pno, dtype=np.int64)]).astype(np.int32),
                "vec": vec.astype(np.float32), "pvec": pvec.astype(np.float32)}


def start_ray(address: str | None):
    """Connect to `address`, or start a local Ray on 127.0.0.1 only. Returns the `ray` module."""
    if address is None:
        # Ray binds its services to the node's address; with clustering off it takes 127.0.0.1 as that
        # address, so nothing listens beyond this machine. A per-run token keeps it out of ~/.ray.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_AUTH_TOKEN", os.urandom(16).hex())
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: no usage reports
    try:
        import ray
    except ImportError:
        from indexing.errors import UserError

        raise UserError("--engine ray needs Ray Data: pip install -e '.[ray]'") from None
    if not ray.is_initialized():
        if address is None:
            ray.init(include_dashboard=False, num_cpus=os.cpu_count(), log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False)
    return ray


def embed_ray(cfg, encoders: dict, docs, passages, todo: list[int], shards, bar) -> None:
    """Embed the shards in `todo` on Ray Data actors; write each shard once all its products are back.
    `encoders` (indexing.build.build_encoders): one encoder for titles and passages, or none for passages."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from indexing.errors import UserError

    embed_passages = passages is not None and encoders["passages"] is not None
    ray = start_ray(cfg.ray_address)
    inputs = shards.folder / "ray_inputs"
    inputs.mkdir(exist_ok=True)
    for f in inputs.glob("*.parquet"):
        f.unlink()
    for k in todo:  # one file per shard: Ray reads one block per file, so the actors share the work
        a, b = k * cfg.shard_size, min((k + 1) * cfg.shard_size, len(docs))
        pq.write_table(pa.Table.from_pandas(docs.iloc[a:b][["id", "title", "content"]], preserve_index=False),
                       inputs / f"{k:05d}.parquet")
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    workers = gpus or max(1, int(resources.get("CPU", 1)))
    # CPU actors take half a core each: Ray's read and write tasks need the rest, or they starve
    per_actor = {"num_gpus": 1} if gpus else {"num_cpus": 0.5}
    ds = ray.data.read_parquet(str(inputs)).map_batches(
        Embedder, batch_size=min(cfg.shard_size, 1024), batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers), **per_actor,
        fn_constructor_kwargs=dict(ident=encoders["titles"], passage_ident=encoders["passages"],
                                   device="cuda" if gpus else "cpu", precision=cfg.precision,
                                   batch_size=cfg.batch_size, embed=cfg.embed,
                                   passage_tokens=cfg.passage_tokens if embed_passages else None,
                                   passage_split=cfg.passage_split))
    pending: dict[int, dict] = {}  # shard -> {"titles": {id: vec}, "passages": {(id, pno): vec}}
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for i, n, v, pv in zip(batch["id"], batch["pno"], batch["vec"], batch["pvec"]):
                k = int(i) // cfg.shard_size
                got = pending.setdefault(k, {"titles": {}, "passages": {}})
                if n < 0:
                    got["titles"][int(i)] = v
                else:
                    got["passages"][(int(i), int(n))] = pv
            for k in [k for k in pending if len(pending[k]["titles"]) == _size(k, cfg.shard_size, len(docs))]:
                got = pending.pop(k)
                a, b = k * cfg.shard_size, min((k + 1) * cfg.shard_size, len(docs))
                arrays = {"titles": np.stack([got["titles"][i] for i in range(a, b)])}
                if embed_passages:
                    lo, hi = passages["id"].searchsorted([a, b])
                    want = passages.iloc[lo:hi]
                    n_of = want.groupby("id").cumcount().to_numpy()
                    keys = list(zip(want["id"].tolist(), n_of.tolist()))
                    if len(keys) != len(got["passages"]) or any(key not in got["passages"] for key in keys):
                        raise UserError(f"shard {k}: the Ray workers split descriptions differently from the "
                                        f"build ({len(got['passages'])} passages, expected {len(keys)}): are "
                                        f"the workers running the same semantic-text-splitter version?")
                    arrays["passages"] = np.stack([got["passages"][key] for key in keys]) if keys else \
                        np.zeros((0, 1), dtype=np.float32)
                shards.write(k, arrays)
                bar.update(b - a)
    finally:
        if cfg.ray_address is None:
            ray.shutdown()
    if pending:
        raise UserError(f"Ray returned incomplete shards {sorted(pending)[:5]}: run the build again to finish them")


def _size(k: int, shard_size: int, n: int) -> int:
    return min((k + 1) * shard_size, n) - k * shard_size
