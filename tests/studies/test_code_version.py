"""Study results know their code: a kind's code version is in its steps' keys, and a reused
result made by other source is reported."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from medmae.source_graph import PACKAGE
from medmae.studies import code
from medmae.studies.plan import build_plan
from medmae.studies.spec import load_study
from medmae.studies.store import RESULT, Step, load_result, save_result, step_key

TINY = Path(__file__).resolve().parent / "tiny_study.yaml"


def plan_keys(plan) -> dict[str, str]:
    """Every step's key, as study run computes them (dependencies' keys chained)."""
    keys: dict[str, str] = {}
    for step in plan:
        keys[step.id] = step_key(step, [keys[d] for d in step.deps])
    return keys


def test_a_bumped_kind_reruns_it_and_what_depends_on_it(monkeypatch):
    spec, root = load_study(TINY)
    plan = build_plan(spec, root, TINY)
    before = plan_keys(plan)
    monkeypatch.setitem(code.CODE_VERSIONS, "pretrain", code.CODE_VERSIONS["pretrain"] + 1)
    after = plan_keys(plan)
    changed = {s for s in before if before[s] != after[s]}
    assert {s.split("-")[0] for s in changed} == {"pretrain", "export", "anomaly", "segmentation"}
    assert "data-cases" not in changed and "preprocess-cache" not in changed
    monkeypatch.setitem(code.CODE_VERSIONS, "pretrain", code.CODE_VERSIONS["pretrain"] - 1)
    monkeypatch.setitem(code.CODE_VERSIONS, "anomaly", code.CODE_VERSIONS["anomaly"] + 1)  # oracle Dice's rule
    changed = {s for s, k in plan_keys(plan).items() if before[s] != k}
    assert changed == {s for s in before if s.startswith("anomaly-")} and changed


def test_a_kind_without_a_version_is_refused():
    with pytest.raises(KeyError, match="CODE_VERSIONS"):
        step_key(Step("new_kind", "x", {}), [])


def test_the_digest_follows_the_modules_a_kind_runs(tmp_path):
    copy = tmp_path / "medmae"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert code.code_record("anomaly", copy)["source_digest"] == code.code_record("anomaly")["source_digest"]
    metrics = copy / "heads" / "anomaly" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\n# changed\n")
    assert "medmae.heads.anomaly.metrics" in code.kind_modules("anomaly", copy)
    assert code.code_record("anomaly", copy)["source_digest"] != code.code_record("anomaly")["source_digest"]
    for kind in ("pretrain", "data", "preprocess"):  # they do not run the anomaly head
        assert code.code_record(kind, copy)["source_digest"] == code.code_record(kind)["source_digest"]
    drift = code.code_drift(code.code_record("anomaly"), "anomaly", copy)
    assert "medmae.heads.anomaly.metrics" in drift


def test_a_reused_result_from_other_code_is_reported(tmp_path, caplog):
    folder = tmp_path / "anomaly-random-s0-abc"
    folder.mkdir()
    save_result(folder, "k1", {"metrics": {"f1": 0.5}}, "anomaly")
    stored = json.loads((folder / RESULT).read_text())
    assert stored["code"]["code_version"] == code.CODE_VERSIONS["anomaly"] and stored["code"]["medmae_version"]
    with caplog.at_level(logging.WARNING, logger="medmae.studies.store"):
        assert load_result(folder, "k1", "anomaly")["metrics"] == {"f1": 0.5}
    assert not caplog.records  # same code: silent
    stored["code"]["modules"]["medmae.heads.anomaly.metrics"] = "0" * 12  # made by an older metrics.py
    stored["code"]["source_digest"] = code.source_digest(stored["code"]["modules"])
    (folder / RESULT).write_text(json.dumps(stored))
    with caplog.at_level(logging.WARNING, logger="medmae.studies.store"):
        assert load_result(folder, "k1", "anomaly") is not None
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "anomaly-random-s0-abc" in msg and "medmae.heads.anomaly.metrics" in msg
    assert "CODE_VERSIONS['anomaly']" in msg and str(folder) in msg
    assert load_result(folder, "other key", "anomaly") is None
