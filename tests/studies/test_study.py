"""medmae study run / show / list on a tiny study: order, reuse, identical re-runs, errors."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medmae.cli.main import main
from medmae.config.base import ConfigError
from medmae.studies.runner import run_study

HERE = Path(__file__).resolve().parent
TINY = HERE / "tiny_study.yaml"


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def first(tmp_path_factory, store):
    torch.set_num_threads(1)
    return run_study(TINY, tmp_path_factory.mktemp("a") / "out", store)


def without_heads(text: str) -> str:
    """The tiny study without its anomaly and segmentation sections (pretraining steps only)."""
    return text.split("\nanomaly:")[0] + "\n"


def _metrics(rows):
    return [{k: v for k, v in r.items()} for r in rows]


def test_study_runs_every_step_in_order_and_compares_variants(first):
    assert first.ran == ["data-cases", "preprocess-cache", "pretrain-random-s0", "export-random-s0",
                         "pretrain-anatomy-s0", "export-anatomy-s0", "data-anomaly_healthy",
                         "data-anomaly_eval", "data-anomaly_healthy_test", "anomaly-random-s0", "anomaly-anatomy-s0", "segmentation-random-s0",
                         "segmentation-anatomy-s0"]
    assert [(r["variant"], r["strategy"], r["seed"]) for r in first.rows] == [("anatomy", "anatomy", 0),
                                                                               ("random", "random", 0)]
    for r in first.rows:
        assert 0 < r["pretrain.final_loss"] and 0 < r["pretrain.loss_over_mean_predictor"] < 5
        # fine-tuned from the variant's export and from scratch, evaluated on the same cases
        assert 0 <= r["segmentation.dice_pretrained_n1"] <= 1 and 0 <= r["segmentation.dice_scratch_n1"] <= 1
        assert r["segmentation.dice"] == r["segmentation.dice_pretrained_n1"]
        # calibrated on healthy phantoms, evaluated on lesion phantoms, the baseline beside the model
        for m in ("model", "baseline", "combined"):
            assert 0 <= r[f"anomaly.{m}_voxel_auroc"] <= 1 and 0 <= r[f"anomaly.{m}_voxel_auprc"] <= 1
            # the held-out healthy phantom counts: false-positive volume and case-level AUROC
            assert r[f"anomaly.{m}_fp_ml_healthy"] >= 0 and 0 <= r[f"anomaly.{m}_case_auroc"] <= 1
        assert r["anomaly.bad_cases"] == 0 and r["anomaly.calibration_bad"] == 0 and r["anomaly.in_sample_cases"] == 0
        assert r["segmentation.dice_gain"] == pytest.approx(r["segmentation.dice"] - r["segmentation.dice_scratch_n1"])
    with open(first.out / "summary.csv", newline="") as f:
        assert [row["variant"] for row in csv.DictReader(f)] == ["anatomy", "random"]
    md = (first.out / "summary.md").read_text(encoding="utf-8")
    assert "| anatomy | anatomy | 1 |" in md and "pretrain.loss_over_mean_predictor" in md
    assert (first.out / "summary.png").stat().st_size > 5000
    assert len(list((first.out / "steps").glob("export-*/encoder/encoder.pt"))) == 2
    reports = list((first.out / "steps").glob("anomaly-*/evaluation/report.html"))
    assert len(reports) == 2 and all(p.stat().st_size > 10_000 for p in reports)


def test_rerun_reuses_every_step_and_a_change_reruns_only_what_depends_on_it(first, store, tmp_path):
    again = run_study(TINY, first.out, store)
    assert again.ran == [] and len(again.reused) == 13 and _metrics(again.rows) == _metrics(first.rows)

    changed = tmp_path / "tiny.yaml"
    changed.write_text(TINY.read_text().replace("masking.strategy=anatomy]", "masking.strategy=anatomy, masking.ratio=0.6]"))
    third = run_study(changed, first.out, store)
    assert third.ran == ["pretrain-anatomy-s0", "export-anatomy-s0", "anomaly-anatomy-s0", "segmentation-anatomy-s0"]


def test_same_study_twice_gives_identical_metrics(first, store, tmp_path):
    second = run_study(TINY, tmp_path / "out", store)
    assert second.ran == first.ran
    assert _metrics(second.rows) == _metrics(first.rows)


def test_killed_step_reruns_and_resumes(first, store, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(first.out, out)
    victim = next((out / "steps").glob("pretrain-random-s0-*"))
    (victim / "result.json").unlink()  # as if killed before it finished
    resumed = run_study(TINY, out, store)
    assert resumed.ran == ["pretrain-random-s0"]  # resumed from its checkpoint at the last step
    assert _metrics(resumed.rows) == _metrics(first.rows)


def test_show_and_list_read_the_store(first, store, capsys):
    assert main(["study", "show", "tiny", "--tracking-uri", store]) == 0
    out = capsys.readouterr().out
    assert "# Study `tiny`" in out and "| random | random | 1 |" in out
    assert main(["study", "list", "--tracking-uri", store]) == 0
    assert "tiny" in capsys.readouterr().out
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    exp = client.get_experiment_by_name("medmae-study-tiny")
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{first.run_id}'")
    names = sorted(re.sub(r"-\d{8}-\d{6}$", "", r.info.run_name) for r in children)  # pretrain: + start time
    # one run per step that trains or evaluates, each once (data, preprocess, export start none);
    # a pretraining run resumed by a later study call (test_killed_step_reruns_and_resumes) moves there
    assert len(set(names)) == len(names) and {"anomaly-anatomy-s0", "anomaly-random-s0", "pretrain-anatomy-s0",
                                              "segmentation-anatomy-s0", "segmentation-random-s0"} <= set(names)
    assert not [n for n in names if n.startswith(("data-", "preprocess-", "export-"))], names
    anomaly = next(r for r in children if r.info.run_name == "anomaly-random-s0")
    assert anomaly.data.tags["version.torch"] and anomaly.data.metrics["model.voxel_auroc"] >= 0
    parent = client.get_run(first.run_id)
    assert parent.data.tags["medmae.study_hash"] and "version.torch" in parent.data.tags


def test_typo_in_study_fails_before_anything_runs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("seeds: [0]", "seedz: [0]"))
    with pytest.raises(ConfigError, match=r"bad\.yaml.*seedz"):
        run_study(bad, tmp_path / "out", f"sqlite:///{tmp_path / 'db.db'}")
    bad.write_text(TINY.read_text().replace("train.steps=6", "train.stepz=6"))
    with pytest.raises(ConfigError, match=r"bad\.yaml.*train\.stepz"):
        run_study(bad, tmp_path / "out", f"sqlite:///{tmp_path / 'db.db'}")
    assert not (tmp_path / "out").exists()


def test_study_hands_pretraining_to_torchrun(tmp_path, store):
    """torchrun --nproc-per-node 2 -m medmae pretrain (gloo on the CPU), as a study step."""
    text = without_heads(TINY.read_text()).replace("  variants:", "  torchrun: 2\n  variants:")
    text = text.replace("    - {name: anatomy, overrides: [masking.strategy=anatomy]}\n", "")
    study = tmp_path / "tiny_ddp.yaml"
    study.write_text(text)
    res = run_study(study, tmp_path / "out", store)
    assert res.ran[-2:] == ["pretrain-random-s0", "export-random-s0"]
    run = next((res.out / "steps").glob("pretrain-random-s0-*")) / "run"
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert state["world_size"] == 2 and state["step"] == 6
    assert res.rows[0]["pretrain.final_loss"] > 0


def test_study_on_real_scans_masks_their_organ_labels(tmp_path, store):
    """A folder of real CT and MR (TotalSegmentator labels beside them) as the study's data:
    both are found with their maps, cached, and anatomy masking trains on the real organs."""
    real = tmp_path / "scans"
    real.mkdir()
    data = HERE.parent / "data"
    for name in ("ct_abdomen_3mm", "mr_abdomen_3mm"):  # TotalSegmentator output named as docs/ingestion.md says
        shutil.copy(data / f"{name}.nii.gz", real / f"{name}.nii.gz")
        shutil.copy(data / f"{name}_seg.nii.gz", real / f"{name}_seg_total.nii.gz")
    text = without_heads(TINY.read_text()).replace("data:\n  synth: {brain: 3,",
                                                   f"data:\n  folders: [{real}]\n  synth: {{brain: 1, brain_mask: true,")
    text = text.replace("    - {name: random, overrides: [masking.strategy=random]}\n", "")
    text = text.replace("data.priors=[body,anatomy]", "data.priors=[body,anatomy]\n    - data.split=null")
    study = tmp_path / "real.yaml"
    study.write_text(text)
    res = run_study(study, tmp_path / "out", store)
    steps = {p.name.rsplit("-", 1)[0]: p for p in (res.out / "steps").iterdir()}
    with open(steps["data-cases"] / "manifest.csv", newline="") as f:
        rows = {r["case_id"]: r for r in csv.DictReader(f)}
    real_rows = [r for cid, r in rows.items() if "abdomen" in cid]
    assert len(real_rows) == 2 and all(r["anatomy"].endswith("_seg_total.nii.gz") for r in real_rows)
    (brain,) = [r for cid, r in rows.items() if "abdomen" not in cid]  # the skull-stripped phantom
    assert brain["mask"].endswith(f"masks/{brain['case_id']}.nii.gz") and not any(r["mask"] for r in real_rows)

    index = (steps["preprocess-cache"] / "cache" / "index.csv").read_text()
    assert index.count("abdomen") == 2
    ct = next(p for p in (steps["preprocess-cache"] / "cache" / "cases").iterdir() if "ct_abdomen" in p.name)
    assert json.loads((ct / "meta.json").read_text())["modality"] == "CT"
    assert len(np.unique(np.load(ct / "anatomy.npy"))) > 10  # the real organs are the masking units
    row = res.rows[0]
    assert row["strategy"] == "anatomy" and 0 < row["pretrain.loss_over_mean_predictor"] < 5
    # the hidden-token r on fixed crops of the real scans (not the phantom) is reported
    pre = next(p for name, p in steps.items() if name.startswith("pretrain"))
    per_case = json.loads((pre / "real_scans.json").read_text())["hidden_corr"]
    assert sorted(per_case) == sorted(real_rows[i]["case_id"] for i in range(2))
    # pretrained on every split (data.split=null): both scans were seen in pretraining, none is held out
    assert row["pretrain.hidden_corr_real_seen"] == pytest.approx(np.mean(list(per_case.values())))
    assert not any(k.endswith("_heldout") for k in row) and row["pretrain.real_scans_seen"] == 2
    # beside the interpolation reference, with edge r, and drawn: one block per real scan
    scores = json.loads((pre / "real_scans.json").read_text())
    for key, column in (("edge_r", "hidden_edge_r_real_seen"), ("interp_hidden_corr", "interp_hidden_corr_real_seen"),
                        ("interp_edge_r", "interp_edge_r_real_seen")):
        assert sorted(scores[key]) == sorted(per_case)
        assert row[f"pretrain.{column}"] == pytest.approx(np.mean(list(scores[key].values())))
    assert set(scores["group"].values()) == {"seen"}
    assert all(-1 <= v <= 1 for k in scores if k not in ("split", "group") for v in scores[k].values())
    from matplotlib.image import imread

    figure = imread(pre / "real_scans.png")
    assert figure.shape[:2] == (1200, 800) and figure.std() > 0.05  # 2 scans x 3 planes (2.5 in, 80 dpi), 4 columns
    from mlflow.tracking import MlflowClient

    run_id = json.loads((pre / "result.json").read_text())["run_id"]
    logged = [a.path for a in MlflowClient(tracking_uri=store).list_artifacts(run_id, "figures")]
    assert "figures/real_scans.png" in logged, logged


@pytest.mark.parametrize("path", sorted((HERE.parents[1] / "studies").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_studies_are_valid(path):
    """Every shipped study file passes the schema and its stage configs resolve (no typo lands)."""
    from medmae.studies.plan import build_plan
    from medmae.studies.spec import load_study

    spec, root = load_study(path)
    assert spec.name == path.stem
    if path.stem == "demo":  # its data is shipped: the whole plan resolves
        kinds = [s.kind for s in build_plan(spec, root, path)]
        assert {"pretrain", "export", "anomaly", "segmentation"} <= set(kinds)
    else:  # GPU-scale studies point at a user's folders, and evaluate both heads' worth
        assert spec.anomaly is not None or spec.segmentation is not None
