"""Digests of a study's inputs: manifests by content, folders by their file listing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from medmae.io.manifest import sha256_of


def manifest_digest(path: Path) -> str:
    """sha256 of the manifest file and of every file it names."""
    from medmae.io.manifest import read_manifest

    cases = read_manifest(path)
    files = [p for c in cases for p in c.source_paths()]
    return hashlib.sha256((sha256_of([path]) + sha256_of(files)).encode()).hexdigest()


def folder_digest(root: Path) -> str:
    """sha256 over (relative path, size, mtime) of every file under ``root`` (cheap on big folders)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            try:
                st = p.stat()
            except OSError:
                continue
            h.update(f"{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()
