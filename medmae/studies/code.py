"""Which code a study step's result comes from.

Two records, for two purposes:

* ``CODE_VERSIONS[kind]`` is part of the step's key (:func:`medmae.studies.store.step_key`).
  Bump it in the change that alters what a kind computes (a metric's rule, a default the
  config does not spell out): every step of that kind, and every step that depends on one,
  then runs again in every existing study. Steps of other kinds are still reused.
* The **source digest** of a kind, sha256 over the files of the modules its step runs
  (their imports followed with :mod:`medmae.source_graph`), is written into ``result.json``
  beside medmae's version. A reused step whose digest differs is reported (a warning naming
  the step, the changed modules when the result lists them, and the fix): the code changed
  without a version bump, which is either harmless (a docstring, a refactor) or a bump
  forgotten. The digest is not in the key, so such an edit does not re-run hours of
  pretraining.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import medmae
from medmae.source_graph import PACKAGE, closure, import_graph, module_files

CODE_VERSIONS: dict[str, int] = {
    "data": 1, "preprocess": 1, "pretrain": 1, "export": 1, "anomaly": 1, "segmentation": 1,
}
"""Per step kind: raise by one when the kind's results change for the same config."""

ROOTS: dict[str, tuple[str, ...]] = {
    "data": ("medmae.io.scan", "medmae.io.manifest", "medmae.synth.write"),
    "preprocess": ("medmae.preprocess.batch",),
    "pretrain": ("medmae.training.engine", "medmae.training.real_scans", "medmae.export.pretrained",
                 "medmae.tracking.metrics_log"),
    "export": ("medmae.export.files",),
    "anomaly": ("medmae.heads.anomaly.run", "medmae.heads.anomaly.evaluate", "medmae.heads.anomaly.results",
                "medmae.heads.anomaly.report", "medmae.heads.anomaly.scored"),
    "segmentation": ("medmae.heads.segmentation.evaluate",),
}
"""The modules each kind's runner calls; their imports are followed. Every kind also counts
the file of :mod:`medmae.studies.kinds` (its runner; not its imports, which are all kinds')."""


def code_version(kind: str) -> int:
    if kind not in CODE_VERSIONS:
        raise KeyError(f"step kind {kind!r} has no entry in medmae.studies.code.CODE_VERSIONS")
    return CODE_VERSIONS[kind]


@functools.lru_cache(maxsize=None)
def _graph(pkg: Path) -> dict[str, set[str]]:
    return import_graph(pkg)


def kind_modules(kind: str, pkg: Path = PACKAGE) -> dict[str, Path]:
    """Module -> file of every module a ``kind`` step runs."""
    files = module_files(pkg)
    return {m: files[m] for m in sorted(closure(_graph(pkg), list(ROOTS[kind])) | {"medmae.studies.kinds"})}


def module_digests(kind: str, pkg: Path = PACKAGE) -> dict[str, str]:
    """Module -> sha256 (12 hex digits) of its file, for the modules of :func:`kind_modules`."""
    return {m: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for m, p in kind_modules(kind, pkg).items()}


def source_digest(modules: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{m}\0{d}\n" for m, d in sorted(modules.items())).encode()).hexdigest()


def code_record(kind: str, pkg: Path = PACKAGE) -> dict:
    """What ``result.json`` records of the code that made it."""
    modules = module_digests(kind, pkg)
    return {"medmae_version": medmae.__version__, "code_version": code_version(kind),
            "source_digest": source_digest(modules), "modules": modules}


def code_drift(recorded: dict | None, kind: str, pkg: Path = PACKAGE) -> str | None:
    """None when a stored result was made by this code; else what differs, in words."""
    if not recorded:
        return "it records no code digest (made before medmae recorded one)"
    now = code_record(kind, pkg)
    if recorded.get("source_digest") == now["source_digest"]:
        return None
    old = recorded.get("modules") or {}
    changed = sorted(m for m in set(old) | set(now["modules"]) if old.get(m) != now["modules"].get(m))
    shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
    return (f"the code of its modules changed since (medmae {recorded.get('medmae_version')} -> "
            f"{now['medmae_version']}; changed: {shown or 'unknown'})")
