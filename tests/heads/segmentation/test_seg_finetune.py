"""Fine-tuning on phantoms: pretrained and scratch both learn with two labelled cases and log
to MLflow; exact resume; strict encoder loading with clear errors."""

import csv
import json
import shutil

import nibabel as nib
import numpy as np

import pytest
import torch
import yaml

from medmae.cli.main import main
from medmae.export.files import ExportError
from medmae.export.report import LoadError
from medmae.heads.segmentation.data import choose_label_cases, train_cases
from medmae.heads.segmentation.engine import finetune
from medmae.heads.segmentation.init import init_encoder
from medmae.heads.segmentation.config import InitConfig
from medmae.models.config import ModelConfig
from medmae.tracking.mlflow_run import Tracker

from seg_helpers import ORGANS, TINY, phantom_cache, pretrained_export, tiny_finetune

LEARN = ["data.crop_size=[24,24,24]", "data.classes={liver: [5]}", "data.label_cases=2", "train.peak_lr=5e-3",
         "data.augment.flip_prob=0", "train.steps=50", "train.val_every=50", "train.decoder_only_steps=5"]

TINY_EVAL = [t for t in TINY if not t.startswith("data.crop_size")] + [
    "data.crop_size=[16,16,16]", "data.classes={liver: [5]}", "data.label_map=anatomy", "train.steps=6",
    "train.val_every=100", "data.val_split=null", "tracking.enabled=false"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    cache = phantom_cache(root, n=4, val=1, spacing=(8.0, 8.0, 8.0))
    return root, cache, pretrained_export(cache, root)


@pytest.fixture(scope="module")
def trained(phantoms, tmp_path_factory):
    """Both arms fine-tuned once on two labelled phantoms, tracked in one MLflow store."""
    _, cache, export = phantoms
    root = tmp_path_factory.mktemp("arms")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    runs = {}
    for arm, extra in (("pretrained", []), ("scratch", ["init.load_weights=false"])):
        cfg = tiny_finetune(cache, root / arm, *LEARN, f"init.source={export}", f"tracking.tracking_uri={uri}",
                            f"tracking.run_name={arm}", *extra)
        runs[arm] = finetune(cfg)
    return runs, uri


def test_pretrained_and_scratch_learn_and_log(trained):
    import mlflow

    runs, uri = trained
    dice = {}
    for arm, r in runs.items():
        assert r.tracking_ok and len(r.train_cases) == 2
        assert sum(r.losses[-5:]) < 0.6 * sum(r.losses[:5])
        dice[arm] = r.val[-1]["table"]["liver"]["dice"]
        run = mlflow.tracking.MlflowClient(uri).get_run(r.run_id)
        assert "val/liver/dice" in run.data.metrics and "loss" in run.data.metrics
        assert run.data.params["init.loaded_fraction"] == ("1.0" if arm == "pretrained" else "0.0")
        assert (r.model_dir / "segmenter.json").is_file()
    report = (runs["pretrained"].out_dir / "init_report.txt").read_text()
    assert "100.0% of" in report and "OK" in report
    print("liver Dice after 50 steps on 2 labelled phantoms:", dice)
    assert dice["pretrained"] >= 0.7 and dice["scratch"] >= 0.7


def test_segment_overlays_in_world_space_also_non_ras(phantoms, trained, tmp_path):
    """Phantoms are stored LPS; a copy with permuted, flipped axes must give the same map in world space."""
    root, _, _ = phantoms
    model = trained[0]["pretrained"].out_dir
    src = root / "phantoms" / "images" / "abdomen_0003.nii.gz"  # the validation phantom
    img = nib.load(src)
    data = np.asarray(img.dataobj)
    perm = np.flip(data.transpose(2, 0, 1), axis=1)  # perm[a, b, c] = data[X-1-b, c, a]
    p = np.zeros((4, 4))  # new voxel (a, b, c) -> old voxel (X-1-b, c, a)
    p[0, 1], p[0, 3], p[1, 2], p[2, 0], p[3, 3] = -1, data.shape[0] - 1, 1, 1, 1
    other = tmp_path / "permuted.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(perm), img.affine @ p), other)
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(src.read_bytes()[:500])
    out = tmp_path / "out"
    assert main(["segment", "--model", str(model), "--out", str(out), str(src), str(other), str(bad)]) == 0
    seg = nib.load(out / "abdomen_0003_seg.nii.gz")
    assert seg.shape == img.shape and np.allclose(seg.affine, img.affine)
    pred = np.asarray(seg.dataobj)
    ref = np.asarray(nib.load(root / "phantoms" / "anatomy" / "abdomen_0003.nii.gz").dataobj) == 5
    assert set(np.unique(pred)) <= {0, 5}  # the original liver id, not the class index
    dice = 2 * ((pred == 5) & ref).sum() / ((pred == 5).sum() + ref.sum())
    assert dice > 0.65, dice
    seg2 = nib.load(out / "permuted_seg.nii.gz")
    assert seg2.shape == perm.shape and np.allclose(seg2.affine, img.affine @ p)
    back = np.flip(np.asarray(seg2.dataobj), axis=1).transpose(1, 2, 0)  # undo the permutation
    assert (back == pred).mean() > 0.995
    vols = list(csv.DictReader(open(out / "volumes.csv")))
    assert [v["case_id"] for v in vols] == ["abdomen_0003", "permuted"]
    ml = ref.sum() * abs(np.linalg.det(img.affine[:3, :3])) / 1000
    assert abs(float(vols[0]["liver_ml"]) - ml) < 0.35 * ml
    problems = list(csv.DictReader(open(out / "report.csv")))
    assert len(problems) == 1 and "broken.nii.gz" in problems[0]["path"]


def test_exact_resume(phantoms, tmp_path):
    _, cache, _ = phantoms
    common = ["data.val_split=null", "train.checkpoint_every=3", "train.decoder_only_steps=4",
              "data.crop_size=[16,16,16]", "tracking.enabled=false"]
    straight = finetune(tiny_finetune(cache, tmp_path / "a", *common, "train.steps=6"), Tracker())
    # a run of 6 steps killed after step 3: the straight run's folder as it was then
    shutil.copytree(tmp_path / "a" / "checkpoints", tmp_path / "c" / "checkpoints")
    for f in (tmp_path / "c" / "checkpoints").glob("step_0000006.pt"):
        f.unlink()
    (tmp_path / "c" / "checkpoints" / "latest.pt").unlink()
    shutil.copy(tmp_path / "c" / "checkpoints" / "step_0000003.pt", tmp_path / "c" / "checkpoints" / "latest.pt")
    cont = finetune(tiny_finetune(cache, tmp_path / "c", *common, "train.steps=6"), Tracker())
    assert cont.start_step == 3
    assert cont.losses == straight.losses[3:]
    a, c = straight.model.state_dict(), cont.model.state_dict()
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_frozen_encoder_and_label_fraction(phantoms, tmp_path):
    _, cache, export = phantoms
    cfg = tiny_finetune(cache, tmp_path / "frozen", "train.encoder=frozen", "train.steps=3", "data.val_split=null",
                        "data.crop_size=[24,24,24]", f"init.source={export}", "tracking.enabled=false")
    r = finetune(cfg, Tracker())
    before = init_encoder(cfg.init, cfg.model.encoder, cfg.data.crop_size).encoder.state_dict()
    after = r.model.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the encoder never moved
    ck = torch.load(r.checkpoint, weights_only=True)
    decoder = [n for n, _ in r.model.named_parameters() if not n.startswith("encoder.")]
    assert len(ck["optimizer"]["state"]) == len(decoder)  # AdamW stepped the decoder's tensors only
    cases = train_cases(cfg.data)  # 3 labelled training phantoms
    picks = [[c.case_id for c in choose_label_cases(cases, n, seed=7)] for n in (1, 2, 3)]
    assert set(picks[0]) <= set(picks[1]) <= set(picks[2]) and len(picks[2]) == 3
    assert picks[1] == [c.case_id for c in choose_label_cases(cases, 2, seed=7)]
    with pytest.raises(ValueError, match="only 3 labelled"):
        choose_label_cases(cases, 4, seed=0)


def test_strict_encoder_load_and_clear_errors(phantoms, tmp_path, capsys):
    root, cache, export = phantoms
    ok = init_encoder(InitConfig(source=str(export)), ModelConfig(), (32, 32, 32))
    assert ok.report.ok and ok.loaded_fraction == 1.0 and ok.report.resized == [("pos_embed", (3, 3, 3), (4, 4, 4), "sincos")]
    # the pretraining run folder and its checkpoint give the same weights as the export
    for source in (root / "pretrain", root / "pretrain" / "checkpoints" / "latest.pt"):
        other = init_encoder(InitConfig(source=str(source)), ModelConfig(), (24, 24, 24))
        assert other.loaded_fraction == 1.0
        assert all(torch.equal(a, b) for a, b in zip(other.encoder.state_dict().values(),
                                                     init_encoder(InitConfig(source=str(export)), ModelConfig(),
                                                                  (24, 24, 24)).encoder.state_dict().values()))
    # a truncated export (weights cut short): the digest check names the file
    cut = tmp_path / "cut"
    shutil.copytree(export, cut)
    data = (cut / "encoder.pt").read_bytes()
    (cut / "encoder.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportError, match="encoder.pt"):
        init_encoder(InitConfig(source=str(cut)), ModelConfig(), (24, 24, 24))
    # weights of another architecture (a deeper encoder's description over these weights)
    other = tmp_path / "other"
    shutil.copytree(export, other)
    meta = json.loads((other / "encoder.json").read_text())
    meta["architecture"]["depth"] = 4
    (other / "encoder.json").write_text(json.dumps(meta))
    with pytest.raises(LoadError, match=r"(?s)missing +24.*blocks\.\[2-3\]"):
        init_encoder(InitConfig(source=str(other)), ModelConfig(), (24, 24, 24))
    code = main(["finetune", f"data.cache_dir={cache}", f"init.source={other}", f"train.out_dir={tmp_path / 'x'}",
                 "tracking.enabled=false"])
    err = capsys.readouterr().err
    assert code == 2 and "does not load fully" in err and "init.allow_partial=true" in err and "missing     24" in err
    partial = init_encoder(InitConfig(source=str(other), allow_partial=True), ModelConfig(), (24, 24, 24))
    assert 0.3 < partial.loaded_fraction < 0.7 and not partial.report.ok
    with pytest.raises(Exception, match="neither a `medmae export`"):
        init_encoder(InitConfig(source=str(tmp_path)), ModelConfig(), (24, 24, 24))


def test_evaluate_label_counts_and_corruptions_pretrained_vs_scratch(phantoms, tmp_path):
    import mlflow

    _, cache, export = phantoms
    out, uri = tmp_path / "eval", f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tmp_path / "evaluate.yaml"
    config.write_text(yaml.safe_dump({"finetune": [*TINY_EVAL, f"data.cache_dir={cache}", f"init.source={export}"]}))
    code = main(["segment", "evaluate", "--config", str(config), "label_counts=[1,2]", "split=val",
                 "corruptions={noise: [0.2], cubes: [0.3]}", f"out_dir={out}", f"tracking.tracking_uri={uri}",
                 "tracking.system_metrics=false"])
    assert code == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2 * 2 * 3 * 2  # arms x label counts x (clean + 2 corruptions) x (liver + mean)
    for n in (1, 2):  # the same labelled cases in both arms
        picked = [(out / arm / f"n{n}_s0" / "train_cases.txt").read_text() for arm in ("pretrained", "scratch")]
        assert picked[0] == picked[1] and len(picked[0].split()) == n
    clean = {(r["arm"], r["label_cases"]): float(r["dice"]) for r in rows
             if r["corruption"] == "clean" and r["class"] == "liver"}
    assert all(0 <= d <= 1 for d in clean.values())
    compare = list(csv.DictReader(open(out / "comparison.csv")))
    assert len(compare) == 2 * 3 * 2 and all("dice_pretrained" in r and "dice_scratch" in r for r in compare)
    r = next(r for r in compare if r["corruption"] == "clean" and r["class"] == "liver" and r["label_cases"] == "2")
    assert abs(float(r["gain"]) - (clean[("pretrained", "2")] - clean[("scratch", "2")])) < 1e-9
    assert (out / "dice_vs_labels.png").stat().st_size > 1000 and (out / "dice_vs_noise.png").is_file()
    client = mlflow.tracking.MlflowClient(uri)
    (exp,) = [e for e in client.search_experiments() if e.name == "medmae-segment-evaluate"]
    (run,) = client.search_runs(exp.experiment_id)
    assert {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")} >= {
        "evaluation/results.csv", "evaluation/comparison.csv", "evaluation/dice_vs_labels.png"}
    assert any(k.startswith("dice/pretrained/n2/noise") for k in run.data.metrics)


def test_sigterm_checkpoints_the_step_marks_killed_and_a_changed_resume_is_refused(phantoms, tmp_path, monkeypatch,
                                                                                     capsys):
    """SIGTERM mid-run: the step in progress finishes and is checkpointed, MLflow says KILLED,
    exit 143, the lock is released; a resume with another train.steps is refused with the key
    and the fix; the same config resumes from the checkpoint and finishes the same MLflow run."""
    import os
    import signal

    from mlflow.tracking import MlflowClient

    from medmae.heads.segmentation import engine
    from medmae.tracking.metrics_log import read_metrics
    from medmae.training.checkpoint import load_checkpoint
    from medmae.training.lock import LOCK

    _, cache, _ = phantoms
    out, uri = tmp_path / "run", f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["finetune", *TINY, *ORGANS, f"data.cache_dir={cache}", f"train.out_dir={out}", "data.val_split=null",
            "data.crop_size=[16,16,16]", "train.steps=5", "train.log_every=1", f"tracking.tracking_uri={uri}",
            "tracking.experiment=ft-sigterm"]
    real_step = engine.FinetuneTask.step

    def terminated_during_step_2(self, step):
        if step == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the step runs
        return real_step(self, step)

    monkeypatch.setattr(engine.FinetuneTask, "step", terminated_during_step_2)
    assert main(args) == 143
    err = capsys.readouterr().err
    assert "stopped by SIGTERM after step 2" in err and "Run the same command to resume" in err, err
    assert load_checkpoint(out / "checkpoints" / "latest.pt")["step"] == 2  # the step in progress, finished
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]
    assert not (out / LOCK).exists()
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("ft-sigterm").experiment_id])
    assert run.info.status == "KILLED" and run.data.params["derived.threads"] == "1"  # the fixture's one thread

    monkeypatch.setattr(engine.FinetuneTask, "step", real_step)
    assert main([*args, "train.steps=8", "train.peak_lr=1e-3", "data.classes={liver: [5]}"]) == 2
    err = capsys.readouterr().err
    assert "train.steps: checkpoint 5, config 8" in err and "train.peak_lr: checkpoint 0.002, config 0.001" in err, err
    assert "data.classes.spleen: checkpoint [1], config '(unset)'" in err, err
    assert "train.resume=false" in err and "another train.out_dir" in err
    assert load_checkpoint(out / "checkpoints" / "latest.pt")["step"] == 2  # nothing was touched

    assert main(args) == 0
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3, 4, 5]
    (again,) = client.search_runs([run.info.experiment_id])  # the same run, continued (mlflow_run.json)
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"


def test_second_finetune_on_the_same_out_dir_stops_with_a_clear_message(phantoms, tmp_path, capsys):
    import json
    import socket
    import subprocess
    import sys

    import psutil

    from medmae.training.lock import LOCK

    _, cache, _ = phantoms
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(),
                                            "started": psutil.Process(holder.pid).create_time()}))
        assert main(["finetune", *TINY, *ORGANS, f"data.cache_dir={cache}", f"train.out_dir={out}",
                     "train.steps=1", "data.val_split=null", "tracking.enabled=false"]) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "fine-tuning run" in err and "train.out_dir" in err, err
        assert sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing written
    finally:
        holder.kill()
        holder.wait()


def test_evaluate_rerun_after_a_finetune_override_change_retrains_the_changed_arm(phantoms, tmp_path, caplog):
    """A second `segment evaluate` with another `finetune:` override trains that arm again (fresh
    log, the new settings in its checkpoint) instead of resuming or reusing the old model; a third
    with the same settings reuses it."""
    import logging

    from medmae.heads.segmentation.bundle import WEIGHTS
    from medmae.tracking.metrics_log import read_metrics
    from medmae.training.checkpoint import load_checkpoint

    _, cache, _ = phantoms
    out = tmp_path / "eval"
    base = [*TINY_EVAL, f"data.cache_dir={cache}", "train.steps=3"]
    run = out / "scratch" / "n1_s0"

    def evaluate(*extra: str) -> None:
        config = tmp_path / "evaluate.yaml"
        config.write_text(yaml.safe_dump({"finetune": [*base, *extra], "arms": {"scratch": []}}))
        assert main(["segment", "evaluate", "--config", str(config), "label_counts=[1]", "split=val",
                     f"out_dir={out}", "tracking.enabled=false"]) == 0

    evaluate()
    first = (run / "model" / WEIGHTS).read_bytes()
    with caplog.at_level(logging.WARNING, logger="medmae.heads.segmentation.evaluate"):
        evaluate("train.peak_lr=1e-3")
    assert "trained with other settings (train.peak_lr: was 0.002, now 0.001)" in caplog.text, caplog.text
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3]  # trained again from step 0
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["config"]["train"]["peak_lr"] == 1e-3
    assert (run / "model" / WEIGHTS).read_bytes() != first
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medmae.heads.segmentation.evaluate"):
        evaluate("train.peak_lr=1e-3")
    assert "other settings" not in caplog.text


def test_validation_shows_its_progress(phantoms, tmp_path, capsys):
    """Validation (sliding window over every validation case) is not silent: a bar per validation."""
    _, cache, _ = phantoms
    result = finetune(tiny_finetune(cache, tmp_path / "v", "train.steps=2", "train.val_every=2",
                                    "data.crop_size=[16,16,16]", "tracking.enabled=false"), Tracker())
    assert result.val and result.val[-1]["step"] == 2
    err = capsys.readouterr().err
    assert "validation at step 2: 100%|" in err, err[-500:]
