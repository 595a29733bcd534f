#!/usr/bin/env python3
"""The development corpus of real failure texts: check, split, count.

Usage (from the repository root):

    python3 scripts/corpus.py check FILE.jsonl [FILE.jsonl ...]
    python3 scripts/corpus.py split [INCOMING_DIR]     # default tests/data/corpus/incoming
    python3 scripts/corpus.py stats [--split train|dev|all]

`check` validates items (fields, types, lengths, duplicates) and prints one
line per problem with file and line; it exits 1 when there is any.

`split` merges every `*.jsonl` under INCOMING_DIR into
`tests/data/corpus/train.jsonl` and `tests/data/corpus/dev.jsonl`. The split is
by source project, never by item: an item goes to dev when the first 8 hex
digits of SHA-256(project) taken as a number are divisible by 3, so every item
of one project lands on the same side, and adding items never moves an
existing one. Items already in train/dev are kept; an incoming item whose id
exists already replaces it.

`stats` prints counts per type, ecosystem, kind and split, without printing
any text, so it can be run on dev without reading it.

Standard library only (Python 3.11).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import sys

TYPES = [
    "infrastructure", "configuration", "dependency", "resource", "application",
    "data", "security", "network", "timing", "human_error",
]
ECOSYSTEMS = [
    "java", "python", "javascript", "ruby", "go", "rust", "cpp", "php", "dotnet",
    "apple", "haskell", "elixir", "docker", "terraform", "helm-gitops",
    "kubernetes", "database", "ci-runner", "tls-dns-proxy", "cloud-api",
]
KINDS = ["log", "message"]
ORIGINS = ["ci", "runtime"]
FIELDS = {
    "id": str, "text": str, "source": str, "project": str, "ecosystem": str,
    "kind": str, "origin": str, "type": str, "transient": bool, "why": str,
}
ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
CORPUS = os.path.join(ROOT, "tests", "data", "corpus")
RESERVED = ("lacinoire/master-thesis", "go-playground/webhooks")


def split_of(project: str) -> str:
    digest = hashlib.sha256(project.strip().lower().encode()).hexdigest()
    return "dev" if int(digest[:8], 16) % 3 == 0 else "train"


def problems(item: dict) -> list[str]:
    out = []
    for name, kind in FIELDS.items():
        if name not in item:
            out.append(f"missing field `{name}`")
        elif not isinstance(item[name], kind):
            out.append(f"`{name}` must be {kind.__name__}")
    extra = set(item) - set(FIELDS) - {"split"}
    if extra:
        out.append(f"unknown fields {sorted(extra)}")
    if out:
        return out
    lines = item["text"].split("\n")
    if not item["text"].strip():
        out.append("empty text")
    if len(lines) > 30:
        out.append(f"text has {len(lines)} lines (at most 30)")
    if item["kind"] == "log" and len(lines) < 3:
        out.append("a `log` excerpt has at least 3 lines")
    if item["type"] not in TYPES:
        out.append(f"unknown type {item['type']!r}")
    if item["ecosystem"] not in ECOSYSTEMS:
        out.append(f"unknown ecosystem {item['ecosystem']!r}")
    if item["kind"] not in KINDS:
        out.append(f"kind must be one of {KINDS}")
    if item["origin"] not in ORIGINS:
        out.append(f"origin must be one of {ORIGINS}")
    if not re.match(r"^(https?://\S+|[\w.-]+/[\w.-]+:\S+)$", item["source"]):
        out.append("source must be a URL or owner/repo:path")
    if not re.match(r"^[\w.-]+(/[\w.-]+)?$", item["project"]):
        out.append("project must be owner/name (or a site's domain)")
    if item["project"].lower() in RESERVED or any(r in item["source"].lower() for r in RESERVED):
        out.append("source is reserved for independent evaluation")
    if len(item["why"]) < 10:
        out.append("`why` needs a one-line reason")
    return out


def read(path: str) -> list[tuple[int, dict | None, str]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append((n, json.loads(line), ""))
            except json.JSONDecodeError as e:
                rows.append((n, None, f"invalid JSON: {e}"))
    return rows


def check(paths: list[str]) -> int:
    bad = 0
    ids: dict[str, str] = {}
    texts: dict[str, str] = {}
    total = 0
    for path in paths:
        for n, item, err in read(path):
            where = f"{path}:{n}"
            found = [err] if item is None else problems(item)
            if item is not None and not found:
                total += 1
                if item["id"] in ids:
                    found.append(f"duplicate id (also {ids[item['id']]})")
                ids[item["id"]] = where
                key = re.sub(r"\s+", " ", item["text"]).strip()
                if key in texts:
                    found.append(f"duplicate text (also {texts[key]})")
                texts[key] = where
            for p in found:
                print(f"{where}: {p}")
                bad += 1
    print(f"{total} items checked, {bad} problems", file=sys.stderr)
    return 1 if bad else 0


def split(incoming: str) -> int:
    existing: dict[str, dict] = {}
    for name in ("train", "dev"):
        path = os.path.join(CORPUS, f"{name}.jsonl")
        if os.path.exists(path):
            for _, item, _ in read(path):
                if item is not None:
                    existing[item["id"]] = item
    files = sorted(
        os.path.join(incoming, f) for f in os.listdir(incoming) if f.endswith(".jsonl")
    )
    bad = 0
    for path in files:
        for n, item, err in read(path):
            for p in [err] if item is None else problems(item):
                print(f"{path}:{n}: {p}")
                bad += 1
    if bad:
        print("fix the problems above first", file=sys.stderr)
        return 1
    # The same excerpt found twice (two queries, two groups): the first kept.
    texts = {re.sub(r"\s+", " ", i["text"]).strip(): i["id"] for i in existing.values()}
    for path in files:
        for n, item, _ in read(path):
            key = re.sub(r"\s+", " ", item["text"]).strip()
            if texts.get(key, item["id"]) != item["id"]:
                print(f"{path}:{n}: same text as {texts[key]}, left out", file=sys.stderr)
                continue
            texts[key] = item["id"]
            existing[item["id"]] = item
    out = {"train": [], "dev": []}
    for item in existing.values():
        item.pop("split", None)
        out[split_of(item["project"])].append(item)
    for name, items in out.items():
        items.sort(key=lambda i: (i["ecosystem"], i["project"], i["id"]))
        with open(os.path.join(CORPUS, f"{name}.jsonl"), "w", encoding="utf-8") as f:
            for item in items:
                ordered = {k: item[k] for k in FIELDS}
                f.write(json.dumps(ordered, ensure_ascii=False) + "\n")
    print(f"train {len(out['train'])}, dev {len(out['dev'])}", file=sys.stderr)
    return 0


def stats(which: str) -> int:
    items = []
    for name in ("train", "dev") if which == "all" else (which,):
        path = os.path.join(CORPUS, f"{name}.jsonl")
        if os.path.exists(path):
            items += [(name, i) for _, i, _ in read(path) if i is not None]
    if not items:
        print("no items", file=sys.stderr)
        return 1
    def table(title: str, key) -> None:
        counts = collections.Counter(key(i) for _, i in items)
        per = collections.defaultdict(collections.Counter)
        for split_name, i in items:
            per[key(i)][split_name] += 1
        print(f"\n{title:<16} {'all':>5} {'train':>6} {'dev':>5}")
        for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"{k:<16} {n:>5} {per[k]['train']:>6} {per[k]['dev']:>5}")
    table("type", lambda i: i["type"])
    table("ecosystem", lambda i: i["ecosystem"])
    table("kind", lambda i: i["kind"])
    table("origin", lambda i: i["origin"])
    table("transient", lambda i: str(i["transient"]).lower())
    projects = {i["project"] for _, i in items}
    print(f"\n{len(items)} items from {len(projects)} projects")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in ("check", "split", "stats"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[1] == "check":
        return check(argv[2:])
    if argv[1] == "split":
        return split(argv[2] if len(argv) > 2 else os.path.join(CORPUS, "incoming"))
    which = "all"
    if "--split" in argv:
        which = argv[argv.index("--split") + 1]
    return stats(which)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
