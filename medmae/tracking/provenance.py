"""What a run was made from: code version, package versions, data digest, machine.

Nothing here reads scan headers: the data digest is over the cache's index and
fingerprint (case ids and aggregate statistics), which carry no patient identity.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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


def source_name(argv: list[str] | None = None) -> str:
    """What started the run, as MLflow's ``mlflow.source.name``: ``medmae <command>`` for the
    medmae CLI, else the script's path (MLflow's own default). Arguments (paths) are left out."""
    argv = sys.argv if argv is None else argv
    prog = Path(argv[0]) if argv and argv[0] else Path("python")
    if prog.name == "medmae" or (prog.name == "__main__.py" and prog.parent.name == "medmae"):
        command = next((a for a in argv[1:] if not a.startswith("-")), "")
        return f"medmae {command}".strip()
    return str(prog.resolve()) if prog.exists() else prog.name


def _git_text(path: Path, *args: str) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def public_url(url: str | None) -> str | None:
    """A remote URL without credentials (``https://user:token@host/x`` -> ``https://host/x``)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url


def code_tags() -> dict[str, str]:
    """Package versions, and MLflow's standard source tags (what ran, git commit, branch and
    remote: the MLflow UI shows them as the run's source), plus whether the tree had changes."""
    import medmae

    tags = {f"version.{k}": v for k, v in package_versions().items()}
    tags["mlflow.source.type"] = "LOCAL"
    tags["mlflow.source.name"] = source_name()
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):  # no user name in this container
        pass
    package = Path(medmae.__file__).parent
    found = git_commit(package)
    if found:
        tags["mlflow.source.git.commit"] = found[0]
        tags["git.dirty"] = str(found[1]).lower()
        for key, args in (("mlflow.source.git.branch", ("rev-parse", "--abbrev-ref", "HEAD")),
                          ("mlflow.source.git.repoURL", ("config", "--get", "remote.origin.url"))):
            value = _git_text(package, *args)
            if key.endswith("repoURL"):
                value = public_url(value)
            if value and value != "HEAD":
                tags[key] = value
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
