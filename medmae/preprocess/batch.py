"""Preprocess a whole manifest into a cache: parallel, resumable, crash-safe.

A bad case (ScanError or any other exception) goes into ``report.csv`` and the rest go on.
A case whose source sha256 and config hash match its cached meta.json is skipped.
``index.csv``, ``report.csv``, ``config.yaml`` and ``fingerprint.json`` are written
atomically after the cases; an interrupted run leaves the previous ones in place.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import psutil
from tqdm import tqdm

from medmae.atomic import atomic_write_text
from medmae.config.base import save_config
from medmae.preprocess.cache import CASES, INDEX
from medmae.io.errors import ScanError
from medmae.io.case_id import inside
from medmae.io.manifest import Case, read_manifest_rows
from medmae.preprocess.case import add_midline, check_extent, preprocess_case, summary_from_meta
from medmae.preprocess.config import PreprocessConfig, config_hash
from medmae.preprocess.fingerprint import build_fingerprint
from medmae.preprocess.output import OutputError, write_failure
from medmae.preprocess.sources import still_current

log = logging.getLogger(__name__)

INDEX_COLUMNS = ("case_id", "split", "modality", "sequence", "channels", "shape", "spacing")
REPORT_COLUMNS = ("case_id", "path", "problem")
LOCK = ".preprocess.lock"


class CacheBusyError(RuntimeError):
    """Another live `medmae preprocess` holds the cache's lock."""


@dataclass
class BatchReport:
    """What one run did: case summaries (done / skipped) and bad cases (case_id, path, problem)."""

    cache_dir: Path
    done: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    bad: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    stopped: OutputError | None = None
    """Set when writing the cache failed (full disk, read-only): the batch stopped there."""

    def lines(self) -> list[str]:
        """Human-readable summary: counts, then one line per bad case."""
        per_case = [d["seconds"] for d in self.done]
        rate = f" ({sum(per_case) / len(per_case):.2f} s per processed case)" if per_case else ""
        out = [f"done {len(self.done)}, skipped {len(self.skipped)} (unchanged), bad {len(self.bad)} "
               f"in {self.seconds:.1f} s{rate} -> {self.cache_dir}"]
        out += [f"  bad {b['case_id']}: {b['path']}: {b['problem']}" for b in self.bad]
        if self.stopped is not None:
            out.append(f"stopped: {self.stopped}; every later case would fail too. The cases done are "
                       "kept and the previous index files left as they were: free space (or pick another "
                       "--out) and re-run")
        return out


def case_dir(cache_dir: Path, case_id: str) -> Path:
    """``cache_dir/cases/<case_id>``, checked to resolve inside ``cache_dir/cases`` (a
    symlinked case folder pointing elsewhere is refused); raises ValueError otherwise."""
    return inside(cache_dir / CASES, cache_dir / CASES / case_id)


def refused_rows(manifest_path: str | os.PathLike, refused: list[tuple[int, str, str]]) -> list[dict]:
    """Report entries for manifest rows refused by :func:`read_manifest_rows`."""
    return [{"case_id": cid, "path": str(manifest_path), "problem": f"manifest line {line} refused: {why}"}
            for line, cid, why in refused]


def cached_meta(cache_dir: Path, case_id: str) -> dict | None:
    """meta.json of a cached case, or None when absent/unreadable."""
    try:
        return json.loads((case_dir(cache_dir, case_id) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def process_one(case: Case, cfg: PreprocessConfig, cache_dir: Path) -> tuple[str, dict]:
    """Run one case; never raises an Exception but OutputError (Ctrl-C still propagates).

    Returns ("done" | "skipped", summary) or ("bad", {case_id, path, problem}). A case is
    skipped only when its config hash matches and its sources are unchanged
    (:func:`medmae.preprocess.sources.still_current`); a case whose source vanished is bad
    and its stale cached folder is removed. OutputError (full disk, read-only cache)
    stops the batch.
    """
    try:
        target = case_dir(cache_dir, case.case_id)
    except ValueError as e:
        return "bad", {"case_id": case.case_id, "path": str(cache_dir / CASES / case.case_id),
                       "problem": str(e).split(": ", 1)[-1]}
    try:
        return _process(case, cfg, cache_dir, target)
    except OutputError:
        raise
    except ScanError as e:
        return "bad", {"case_id": case.case_id, "path": e.path, "problem": e.problem}
    except OSError as e:
        return "bad", {"case_id": case.case_id, "path": e.filename or case.image[0],
                       "problem": e.strerror or str(e)}
    except Exception as e:  # any failure is this case's problem; the batch goes on
        return "bad", {"case_id": case.case_id, "path": case.image[0],
                       "problem": f"{type(e).__name__}: {e}"}


def _process(case: Case, cfg: PreprocessConfig, cache_dir: Path, target: Path) -> tuple[str, dict]:
    meta = cached_meta(cache_dir, case.case_id)
    try:
        current, stats = still_current(meta, case) if meta else (False, [])
    except ScanError:
        if meta is not None:  # its source is gone: so goes the cached copy
            shutil.rmtree(target, ignore_errors=True)
        raise
    if current and meta.get("config_hash") == config_hash(cfg):
        check_extent(case.image[0], meta["source_shape"], meta["source_spacing"], cfg.min_extent_mm)
        if meta.get("source_files") != stats:  # touched, same bytes: remember the new stats
            meta = {**meta, "source_files": stats}
            try:
                atomic_write_text(target / "meta.json", json.dumps(meta, indent=1))
            except OSError as e:
                raise write_failure(cache_dir, e, f"case {case.case_id}") from None
        if "midline" not in meta:  # cached before planes were stored: add it (~1 s), keep the rest
            meta = add_midline(target, meta)
        return "skipped", summary_from_meta(meta, case)
    return "done", preprocess_case(case, cfg, cache_dir)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_parallel(cases: list[Case], cfg: PreprocessConfig, cache: Path,
                  workers: int) -> Iterator[tuple[str, dict]]:
    """Yield process_one results as spawned worker processes finish them."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cpus // workers)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads,))
    try:
        futures = {pool.submit(process_one, c, cfg, cache): c for c in cases}
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except BrokenProcessPool:
                c = futures[fut]
                yield "bad", {"case_id": c.case_id, "path": c.image[0],
                              "problem": "worker process died (out of memory or killed)"}
    except BaseException:  # Ctrl-C or the consumer stopped: drop queued cases, don't wait
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def run_cases(cases: list[Case], cfg: PreprocessConfig, cache: Path, workers: int,
              progress: bool = True) -> BatchReport:
    """Process ``cases`` (in this process when ``workers`` is 0) with a progress bar.

    A failure to write the cache stops the batch: ``report.stopped`` holds it.
    """
    report = BatchReport(cache)
    t0 = time.perf_counter()
    with tqdm(total=len(cases), desc="preprocess", unit="case", disable=not progress) as bar:
        results = (_run_parallel(cases, cfg, cache, min(workers, len(cases))) if workers > 0
                   else (process_one(c, cfg, cache) for c in cases))
        try:
            for status, info in results:
                getattr(report, status).append(info)
                bar.update(1)
                bar.set_postfix(done=len(report.done), skipped=len(report.skipped), bad=len(report.bad))
        except OutputError as e:  # the generator (and its worker pool) is closed by now
            report.stopped = e
    report.seconds = time.perf_counter() - t0
    return report


def clean_stale(cache: Path) -> int:
    """Remove temporaries left by killed runs: ``.*.tmp`` / ``.*.old`` under cases/ and the root."""
    n = 0
    for folder in (cache / CASES, cache):
        for p in list(folder.glob(".*.tmp")) + list(folder.glob(".*.old")):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            n += 1
    return n


@contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """Hold ``CACHE/.preprocess.lock`` (holder's pid); a lock whose holder is dead is taken over."""
    cache.mkdir(parents=True, exist_ok=True)
    lock = cache / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            text = lock.read_text().strip() if lock.exists() else ""
            pid = int(text) if text.isdigit() else 0
            if pid and pid != os.getpid() and psutil.pid_exists(pid):
                raise CacheBusyError(f"{cache}: another `medmae preprocess` (pid {pid}) is writing "
                                     f"this cache") from None
            lock.unlink(missing_ok=True)
    else:
        raise CacheBusyError(f"{cache}: cannot take {LOCK}")
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _csv_text(rows: list[dict], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _index_row(s: dict) -> dict:
    return {**s, "shape": "x".join(str(v) for v in s["shape"]),
            "spacing": "x".join(f"{v:g}" for v in s["spacing"])}


def write_outputs(report: BatchReport, cfg: PreprocessConfig) -> None:
    """index.csv, report.csv, config.yaml, fingerprint.json (each atomically)."""
    cache = report.cache_dir
    ok = sorted(report.done + report.skipped, key=lambda s: s["case_id"])
    atomic_write_text(cache / INDEX, _csv_text([_index_row(s) for s in ok], INDEX_COLUMNS))
    bad = sorted(report.bad, key=lambda b: b["case_id"])
    atomic_write_text(cache / "report.csv", _csv_text(bad, REPORT_COLUMNS))
    save_config(cfg, cache / "config.yaml")
    atomic_write_text(cache / "fingerprint.json", json.dumps(build_fingerprint(ok), indent=1))


def preprocess_manifest(manifest_path: str | os.PathLike, cache_dir: str | os.PathLike,
                        cfg: PreprocessConfig, workers: int | None = None,
                        progress: bool = True) -> BatchReport:
    """Preprocess every case of a manifest into ``cache_dir`` and write its index files.

    ``workers`` overrides ``cfg.workers`` (0 = in this process). Manifest rows with an
    invalid case id (or other row fault) are reported as bad, the rest go on. Raises
    ValueError for an unreadable manifest, CacheBusyError when another run holds the cache,
    OutputError when the cache folder cannot be written at all; a write failing during the
    batch stops it (``report.stopped``).
    """
    cases, refused = read_manifest_rows(manifest_path)
    cache = Path(cache_dir)
    workers = cfg.workers if workers is None else workers
    try:
        with cache_lock(cache):
            if n := clean_stale(cache):
                log.info("removed %d temporary folder(s) left by an interrupted run", n)
            report = run_cases(cases, cfg, cache, workers, progress)
            report.bad += refused_rows(manifest_path, refused)
            if report.stopped is None:  # a stopped batch keeps the previous index files
                write_outputs(report, cfg)
    except OSError as e:  # the lock, the index files: the cache folder cannot be written
        raise write_failure(cache, e, "the cache") from None
    log.debug("preprocess: %s", report.lines()[0])
    return report
