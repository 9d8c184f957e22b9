"""``medmae study run``: the study's steps in dependency order, finished ones reused.

    spec -> plan (steps with resolved configs) -> for each step: reuse result.json with the
    same key, or run it into its own folder -> summary table + plots -> MLflow parent run

A killed study run again skips every finished step and resumes the one it was in (a
pretraining step continues from its checkpoint). One ``study run`` per output folder: it
holds ``OUT/.medmae-study.lock`` (medmae.pidlock); a second one stops before running anything.
SIGTERM / Ctrl-C mark the study's parent run KILLED (the step's own runs stop as their
engines do) and the command exits 143 / 130.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from medmae.pidlock import FolderBusyError, folder_lock
from medmae.studies.kinds import KINDS, StudyContext
from medmae.studies.plan import build_plan
from medmae.studies.spec import load_study, spec_hash
from medmae.studies.store import load_result, save_result, step_dir, step_key
from medmae.studies.summary import rows_from_results, write_summary
from medmae.studies.tracking import StudyRuns, record_store, study_store

log = logging.getLogger(__name__)

LOCK = ".medmae-study.lock"


@dataclass
class StudyResult:
    name: str
    out: Path
    rows: list[dict]
    summary: list[Path]
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    tracking_uri: str = ""
    run_id: str | None = None


def run_study(study_file: str | Path, out: str | Path | None = None, tracking_uri: str | None = None) -> StudyResult:
    """Run (or resume) the study; ConfigError before anything runs when the file is wrong or
    another ``study run`` uses the output folder."""
    from medmae.config.base import ConfigError
    study_file = Path(study_file)
    spec, root = load_study(study_file)
    plan = build_plan(spec, root, study_file)  # every config resolved: typos fail here
    out = Path(out or spec.out.format(name=spec.name)).resolve()
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(folder_lock(out, LOCK, "study run"))
        except FolderBusyError as e:
            raise ConfigError(f"study {spec.name!r}: {e}") from None
        return _run(spec, plan, out, study_store(spec, root, tracking_uri))


def _run(spec, plan, out: Path, uri: str) -> StudyResult:
    """The study's steps in order, with the output folder locked (see run_study)."""
    from medmae.config.base import flatten
    from medmae.tracking.provenance import code_tags

    digest = spec_hash(spec)
    runs = StudyRuns(uri, f"medmae-study-{spec.name}")
    runs.start(spec.name, {"medmae.study_hash": digest, **code_tags()}, flatten(spec.model_dump(mode="json")))
    ctx = StudyContext(experiment=runs.experiment, tracking_uri=uri)
    record_store(out, spec.name, uri, runs)  # `medmae study show OUT` reads the store from it

    results, keys = {}, {}
    done: list[tuple[dict, str, dict]] = []
    ran, reused = [], []
    summary: list[Path] = []
    status = "FAILED"
    t0 = time.perf_counter()
    try:
        for i, step in enumerate(plan, 1):
            key = step_key(step, [keys[d] for d in step.deps])
            folder = step_dir(out, step, key)
            result = load_result(folder, key, step.kind)
            if result is None:
                log.info("study %s [%d/%d]: running %s (%s)", spec.name, i, len(plan), step.id, folder.name)
                folder.mkdir(parents=True, exist_ok=True)
                t = time.perf_counter()
                step_ctx = dataclasses.replace(ctx, tags=runs.step_tags(step.id, key))
                result = KINDS[step.kind](step, folder, {d: results[d] for d in step.deps}, step_ctx)
                result["seconds"] = time.perf_counter() - t
                result = save_result(folder, key, result, step.kind)
                ran.append(step.id)
            else:
                log.info("study %s [%d/%d]: %s finished before, reused", spec.name, i, len(plan), step.id)
                reused.append(step.id)
            results[step.id], keys[step.id] = result, key
            done.append((step.labels, step.kind, result))
            runs.step(step.id, step.kind, step.labels, result.get("metrics", {}), step.id in reused, key,
                      result.get("run_id"))
        rows = rows_from_results(done)
        summary = write_summary(spec.name, rows, out)
        runs.summary(rows)
        status = "FINISHED"
    except KeyboardInterrupt as e:
        status = "KILLED"
        log.warning("study %s %s after %d step(s) run, %d reused; run it again to resume", spec.name,
                    e or "interrupted", len(ran), len(reused))
        raise
    finally:
        runs.finish(summary, {"seconds": time.perf_counter() - t0, "steps_run": len(ran),
                              "steps_reused": len(reused)}, status)
    return StudyResult(spec.name, out, rows, summary, ran, reused, uri, runs.parent)
