"""What a run was made from: code version, package versions, data digest, machine.

Nothing here reads scan headers: the data digest is over the cache's index and
fingerprint (case ids and aggregate statistics), which carry no patient identity.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = ("torch", "monai", "medmae", "mlflow", "numpy")
DIGEST_FILES = ("index.csv", "fingerprint.json", "config.yaml")


def git_commit(path: str | os.PathLike) -> tuple[str, bool] | None:
    """(commit hash, working tree has changes) of the git checkout holding ``path``, else None."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return commit, dirty


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def cache_digest(cache_dir: str | os.PathLike) -> str | None:
    """sha256 over the cache's index, fingerprint and preprocessing config (None if none exist)."""
    h = hashlib.sha256()
    found = False
    for name in DIGEST_FILES:
        p = Path(cache_dir) / name
        if p.is_file():
            found = True
            h.update(name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest() if found else None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()}"


def code_tags() -> dict[str, str]:
    """Package versions and the git commit (plus whether the tree had local changes)."""
    import medmae

    tags = {f"version.{k}": v for k, v in package_versions().items()}
    found = git_commit(Path(medmae.__file__).parent)
    if found:
        tags["mlflow.source.git.commit"] = found[0]
        tags["git.dirty"] = str(found[1]).lower()
    return tags


def run_tags(cache_dir: str | os.PathLike, device: torch.device, world_size: int,
             extra: dict[str, str] | None = None) -> dict[str, str]:
    """MLflow tags describing the run's code, software, data and hardware."""
    tags = code_tags()
    digest = cache_digest(cache_dir)
    if digest:
        tags["data.cache_digest"] = digest
    tags["device"] = device_name(device)
    tags["world_size"] = str(world_size)
    tags.update(extra or {})
    return tags
