"""Preprocessing across nodes: deterministic shards of a manifest that fill one shared cache.

``medmae preprocess MANIFEST --out CACHE --shard I/N`` (I = 1..N, e.g. a SLURM array's
``$SLURM_ARRAY_TASK_ID`` of ``--array=1-N``) processes the cases whose stable hash of
``case_id`` falls into share I, and writes only the case folders plus
``CACHE/shards/I-of-N.json`` (its done / bad lists). Shards hold no cache-wide lock and
never clean other shards' temporaries, so N of them can write the same cache at once.

``medmae preprocess MANIFEST --out CACHE --merge`` then takes the cache lock and writes
``index.csv``, ``report.csv``, ``config.yaml`` and ``fingerprint.json`` from the cached
cases' meta.json, exactly as a single run would have: a case no shard cached is reported
as bad ("not cached by any shard"), with the reason a shard gave when there is one.

The share of a case depends only on its id (crc32), not on the manifest order, so adding
cases to a manifest moves no existing case to another shard.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from pathlib import Path

from medmae.atomic import atomic_write_text
from medmae.io.manifest import Case, read_manifest_rows
from medmae.preprocess.batch import (BatchReport, cache_lock, cached_meta, clean_stale, refused_rows, run_cases,
                                     write_outputs)
from medmae.preprocess.case import summary_from_meta
from medmae.preprocess.config import PreprocessConfig, config_hash

SHARDS = "shards"


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 1 <= I <= N; ValueError naming the expected form otherwise."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected I/N, e.g. 2/8 (I counts from 1)") from None
    if n < 1 or not 1 <= i <= n:
        raise ValueError(f"--shard {text!r}: need 1 <= I <= N (I counts from 1)")
    return i, n


def shard_of(case_id: str, count: int) -> int:
    """The 1-based share of ``case_id`` among ``count`` (stable across runs and machines)."""
    return zlib.crc32(case_id.encode("utf-8")) % count + 1


def shard_cases(cases: list[Case], index: int, count: int) -> list[Case]:
    """The cases of share ``index`` of ``count``, in manifest order."""
    return [c for c in cases if shard_of(c.case_id, count) == index]


def _shard_file(cache: Path, index: int, count: int) -> Path:
    return cache / SHARDS / f"{index}-of-{count}.json"


def preprocess_shard(manifest_path: str | os.PathLike, cache_dir: str | os.PathLike, cfg: PreprocessConfig,
                     index: int, count: int, workers: int | None = None, progress: bool = True) -> BatchReport:
    """Process share ``index`` of ``count`` of the manifest into ``cache_dir`` (no index files)."""
    cases = shard_cases(read_manifest_rows(manifest_path)[0], index, count)  # merge reports refused rows
    cache = Path(cache_dir)
    (cache / SHARDS).mkdir(parents=True, exist_ok=True)
    report = run_cases(cases, cfg, cache, cfg.workers if workers is None else workers, progress)
    record = {"shard": f"{index}/{count}", "config_hash": config_hash(cfg), "finished": time.time(),
              "done": sorted(s["case_id"] for s in report.done + report.skipped), "bad": report.bad}
    atomic_write_text(_shard_file(cache, index, count), json.dumps(record, indent=1))
    return report


def _shard_problems(cache: Path, cfg_hash: str) -> dict[str, dict]:
    """case_id -> bad entry from the shard records written with this config."""
    problems: dict[str, dict] = {}
    for path in sorted((cache / SHARDS).glob("*-of-*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if record.get("config_hash") == cfg_hash:
            problems.update({b["case_id"]: b for b in record.get("bad", [])})
    return problems


def merge_shards(manifest_path: str | os.PathLike, cache_dir: str | os.PathLike,
                 cfg: PreprocessConfig) -> BatchReport:
    """Write the cache's index files from what the shards cached; see the module docstring."""
    cases, refused = read_manifest_rows(manifest_path)
    cache = Path(cache_dir)
    wanted = config_hash(cfg)
    t0 = time.perf_counter()
    with cache_lock(cache):
        clean_stale(cache)  # under the lock no shard of this cache is expected to be running
        report = BatchReport(cache)
        problems = _shard_problems(cache, wanted)
        for case in cases:
            meta = cached_meta(cache, case.case_id)
            if meta is not None and meta.get("config_hash") == wanted:
                report.skipped.append(summary_from_meta(meta, case))
            elif case.case_id in problems:
                report.bad.append(problems[case.case_id])
            else:
                why = ("cached with another preprocessing config" if meta is not None
                       else "not cached by any shard (did every shard finish?)")
                report.bad.append({"case_id": case.case_id, "path": case.image[0], "problem": why})
        report.bad += refused_rows(manifest_path, refused)
        write_outputs(report, cfg)
    report.seconds = time.perf_counter() - t0
    return report
