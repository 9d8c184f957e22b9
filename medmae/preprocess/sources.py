"""Source files of a case as they are now: is a cached case still current?

A cached case records ``source_files`` (path, size, mtime_ns of every file it was built
from) and ``source_sha256`` (their digest, computed from the bytes actually read). A re-run
skips the case only when the files' size and mtime are unchanged, or, when they differ,
when their sha256 still matches. The manifest's own ``sha256`` (from `data scan`) is never
trusted for that: files change between a scan and a preprocess.
"""

from __future__ import annotations

from pathlib import Path

from medmae.io.errors import ScanError
from medmae.io.manifest import Case, sha256_of, source_files


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def source_stats(case: Case) -> list[dict]:
    """[{path, size, mtime_ns}] of every source file of ``case`` (folders: the files inside).

    Raises ScanError naming a source that no longer exists.
    """
    out = []
    for src in source_files(case):
        if not src.exists() and not src.is_symlink():
            raise ScanError(src, "source vanished: no such file (listed in the manifest; deleted or moved "
                                 "since the scan); the case is dropped from the index")
        for f in _files(src):
            st = f.stat()
            out.append({"path": str(f), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)})
    return out


def source_digest(case: Case) -> str:
    """sha256 over the case's source files as they are now."""
    return sha256_of(source_files(case))


def still_current(meta: dict, case: Case) -> tuple[bool, list[dict]]:
    """(whether the cached ``meta`` was built from the case's present sources, their stats).

    Size and mtime unchanged -> current without hashing; otherwise the sha256 decides.
    Raises ScanError when a source vanished.
    """
    stats = source_stats(case)
    if meta.get("source_files") == stats:
        return True, stats
    return source_digest(case) == meta.get("source_sha256"), stats


def check_unchanged(case: Case, before: list[dict]) -> None:
    """Raise ScanError when a source changed while the case was being read and hashed."""
    after = source_stats(case)
    if after != before:
        moved = next((a["path"] for a, b in zip(after, before) if a != b), after[0]["path"] if after else "?")
        raise ScanError(moved, "source changed while it was being read (another program is writing it); "
                               "re-run once it is complete")
