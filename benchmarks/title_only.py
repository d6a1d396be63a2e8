"""Products without a description in the index: are they found by name and never refused, and does
abstention still refuse invented products as before?

    python benchmarks/title_only.py [--n 500]

Three catalogs, each built twice in one run, as `productqa prepare` writes it now (title-only products
kept) and with `--require-description` (the catalog before they were kept: the baseline):
  * demo: the shipped demo catalog (146 of its 376 products have no description);
  * real: the real records in ../shared (one title-only product: a description that is only an
    edition footer);
  * real, 38% title-only: the same real records with the description of a fixed 38% of them (by a hash
    of the uid) removed: real titles at the real data's title-only rate (the real records in ../shared
    were chosen for having a description, so they hold almost none).
For each index, `productqa eval retrieval`'s questions about the products the learned fusion never trained
on (`--products held-out`), with the hand-written ones for the real records, and its abstention table:
hit@1 and "not in the catalog" for naming questions about described and about title-only products (in the
fine-tuning templates, "What is 'X'?" with exact, lower-cased, partial and typo'd titles and Portuguese,
and in held-out conversational frames), and questions naming invented products. Writes
benchmarks/results/title_only.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "indexing" / "data"
TEMPLATE_KINDS = ("exact", "lower", "partial", "typo", "portuguese")


def strip_share(src: list[Path], out: Path, share: float = 0.38) -> Path:
    """A raw JSON lines file of the records of `src` (Alpaca or raw) with the description of `share` of them
    (a fixed hash of the title) removed."""
    from indexing.prepare import load_records

    with open(out, "w", encoding="utf-8") as f:
        for path in src:
            for t in load_records(path):
                for uid, title, content in zip(*(t[c].to_pylist() for c in ("uid", "title", "content"))):
                    h = int.from_bytes(hashlib.blake2b(title.encode(), digest_size=4).digest(), "little")
                    if h % 1000 < share * 1000:
                        content = ""
                    f.write(json.dumps({"uid": uid, "title": title, "content": content}) + "\n")
    return out


def measure(index_dir: Path, catalog: Path, n: int, extra: list[Path]) -> dict:
    from indexing.catalog import read_catalog
    from indexing.evaluate import (
        all_questions,
        evaluate_abstention,
        evaluate_retrieval,
        handwritten_questions,
        held_out,
        invented_questions,
    )
    from indexing.search import load_index

    idx = load_index(index_dir)
    docs = read_catalog(catalog)
    qs = all_questions(held_out(docs), n)
    for f in extra:
        qs += handwritten_questions(f, docs)
    title_only = set(docs["uid"][docs["content"] == ""])
    for q in qs:
        q["title_only"] = q["uid"] in title_only
    per = evaluate_retrieval(idx, qs)
    table = evaluate_abstention(idx, per, invented_questions(docs, min(n, 300)))
    templates = [q for q in qs if q["variant"] in TEMPLATE_KINDS]
    tpl = evaluate_retrieval(idx, templates)["hybrid"]
    return {"products": len(idx), "title_only": len(title_only), "table": table,
            "templates": {k: tpl.get(k) for k in ("names: described", "names: title-only")},
            "descriptions": per["hybrid"].get("descriptions")}


def main() -> None:
    from indexing.build import BuildConfig, build_index
    from indexing.prepare import prepare
    from tests.conftest import DEMO_RAW, SHARED

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="products asked about per catalog (held-out ones)")
    args = ap.parse_args()
    t_start, load0 = time.time(), os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="pqa-title-only-"))
    real = [SHARED / "trn_first500_title_content_alpaca.json", SHARED / "trn_raw_lines_from_readme.jsonl"]
    hand = [DATA / "description_questions.json", DATA / "heldout_questions.json"]
    sets = [("demo", [DEMO_RAW], []), ("real", real, hand),
            ("real, 38% title-only", [strip_share(real, tmp / "real38.jsonl")], [])]
    rows = []
    for name, inputs, extra in sets:
        for require in (True, False):
            tag = f"{name} ({'described only' if require else 'every product'})"
            cat, out = tmp / f"{len(rows)}-cat", tmp / f"{len(rows)}-index"
            prepare(inputs, cat, progress=False, require_description=require)
            meta = build_index(BuildConfig(catalog=str(cat), out=str(out), progress=False))
            m = measure(out, cat, args.n, extra)
            m["build_seconds"], m["calibration"] = meta["build_seconds"]["total"], meta["calibration"]
            rows.append((tag, m))
            print(tag, json.dumps(m["table"]), flush=True)

    def cell(row, key, what):
        r = row.get(key)
        return "-" if not r else (f"{r[what]:.3f}" if what == "hit@1" else f"{r[what]:.1%}")

    lines = [f"Command: `{shlex.join(['python', 'benchmarks/title_only.py', *sys.argv[1:]])}`. Questions about the "
             f"products the learned fusion never trained on (up to {args.n} per catalog); \"refused\": the index "
             "says \"not in the catalog\" (its calibrated rule over the top 3 hits, as answering applies it).", "",
             "| catalog | products | title-only | named, described: hit@1 | refused | named, title-only: hit@1 "
             "| refused | ... in the templates: hit@1 | refused | invented refused | described (questions "
             "quoting descriptions): hit@1 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for tag, m in rows:
        t, tpl = m["table"], m["templates"]
        desc = m["descriptions"]
        lines.append(f"| {tag} | {m['products']:,} | {m['title_only']:,} | {cell(t, 'named, described', 'hit@1')} | "
                     f"{cell(t, 'named, described', 'refused')} | {cell(t, 'named, title-only', 'hit@1')} | "
                     f"{cell(t, 'named, title-only', 'refused')} | {cell(tpl, 'names: title-only', 'hit@1')} | "
                     f"{cell(tpl, 'names: title-only', 'refused')} | {t['invented']['refused']:.1%} | "
                     + (f"{desc['hit@1']:.3f}" if desc else "-") + " |")
    lines += ["", f"{os.cpu_count()} CPUs, no GPU; load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at "
              f"end; {(time.time() - t_start) / 60:.1f} min."]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "benchmarks" / "results" / "title_only.md"
    out.write_text(text + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
