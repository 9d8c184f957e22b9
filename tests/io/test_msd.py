"""The Medical Segmentation Decathlon layout: dataset.json, imagesTr/labelsTr/imagesTs, one
file per case, a 4D NIfTI's 4th axis its channels; through scan, manifest and preprocess."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from ingest_helpers import DATA
from medmae.cli.main import main
from medmae.config.base import load_config
from medmae.data.cache import list_cases
from medmae.io import read_volume
from medmae.io.manifest import read_manifest
from medmae.io.scan import scan_folder
from medmae.preprocess.batch import preprocess_manifest
from medmae.preprocess.config import PreprocessConfig

BRAIN_CHANNELS = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
BRAIN_LABELS = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}


def _brain_task(root):
    """Task01_BrainTumour in small: 2 training cases and 1 test case, 4D (X, Y, Z, 4) from the real brain."""
    task = root / "Task01_BrainTumour"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (task / sub).mkdir(parents=True)
    brain = read_volume(DATA / "brain1_t1c.nrrd")
    tumour = np.asarray(read_volume(DATA / "brain1_tumour.nrrd").array)
    crop = (slice(64, 192), slice(64, 192), slice(None))
    t1c = np.asarray(brain.array, np.float32)[crop]
    rng = np.random.default_rng(0)
    training = []
    for i, name in enumerate(("BRATS_001", "BRATS_002", "BRATS_101")):
        channels = [t1c * (0.6 + 0.1 * c) + rng.normal(0, 5, t1c.shape) + 10 * i for c in range(4)]
        image = np.stack(channels, axis=-1).astype(np.float32)
        folder = "imagesTs" if name == "BRATS_101" else "imagesTr"
        nib.save(nib.Nifti1Image(image, brain.affine), str(task / folder / f"{name}.nii.gz"))
        if folder == "imagesTr":
            label = tumour[crop].astype(np.uint8) * (1 + i)  # edema in one case, non-enhancing in the other
            nib.save(nib.Nifti1Image(label, brain.affine), str(task / "labelsTr" / f"{name}.nii.gz"))
            training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
    (task / "dataset.json").write_text(json.dumps({
        "name": "BRATS", "modality": BRAIN_CHANNELS, "labels": BRAIN_LABELS, "numTraining": 2,
        "training": training, "test": ["./imagesTs/BRATS_101.nii.gz"]}))
    return task


def _spleen_task(root):
    """Task09_Spleen in small: the real CT with the spleen of its TotalSegmentator map as label 1."""
    task = root / "Task09_Spleen"
    for sub in ("imagesTr", "labelsTr"):
        (task / sub).mkdir(parents=True)
    ct, seg = nib.load(DATA / "ct_abdomen_3mm.nii.gz"), nib.load(DATA / "ct_abdomen_3mm_seg.nii.gz")
    nib.save(ct, str(task / "imagesTr" / "spleen_2.nii.gz"))
    spleen = (np.asarray(seg.dataobj) == 1).astype(np.uint8)
    nib.save(nib.Nifti1Image(spleen, seg.affine), str(task / "labelsTr" / "spleen_2.nii.gz"))
    (task / "dataset.json").write_text(json.dumps({
        "name": "Spleen", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "spleen"},
        "training": [{"image": "./imagesTr/spleen_2.nii.gz", "label": "./labelsTr/spleen_2.nii.gz"}], "test": []}))
    return task


@pytest.fixture(scope="module")
def msd(tmp_path_factory):
    root = tmp_path_factory.mktemp("msd")
    return root, _brain_task(root), _spleen_task(root)


def test_4d_brain_task_is_one_multichannel_case_per_file(msd, tmp_path, capsys):
    root, brain, _ = msd
    out = tmp_path / "manifest.csv"
    assert main(["data", "scan", str(brain), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "3 case(s): MR 3" in printed and "0 bad file(s)" in printed
    cases = {c.case_id: c for c in read_manifest(out)}
    assert sorted(cases) == ["BRATS_001", "BRATS_002", "BRATS_101"]
    one = cases[sorted(cases)[0]]
    assert [p.rsplit("/", 1)[-1] for p in one.image] == [f"BRATS_001.nii.gz#c{i}" for i in range(4)]
    assert one.sequence == "flair,t1,t1c,t2"  # dataset.json's channel names
    assert one.label.endswith("labelsTr/BRATS_001.nii.gz") and not cases[sorted(cases)[2]].label  # imagesTs: none
    channel2 = read_volume(one.image[2])
    assert channel2.shape == (128, 128, 25)
    whole = np.asarray(nib.load(brain / "imagesTr" / "BRATS_001.nii.gz").dataobj)
    assert np.array_equal(channel2.array, whole[..., 2])  # the 4th axis, channel 2: not another one
    names = json.loads((tmp_path / "manifest.labels.json").read_text())
    assert names[one.case_id] == {"label": BRAIN_LABELS}  # label names travel beside the manifest

    cfg = load_config(PreprocessConfig, None, ["spacing=[4,4,4]", "priors.supervoxels=0", "min_shape=[16,16,16]"])
    report = preprocess_manifest(out, tmp_path / "cache", cfg, workers=0, progress=False)
    assert len(report.done) == 3 and not report.bad
    cached = {c.case_id: c for c in list_cases(tmp_path / "cache", split=None)}
    assert cached[one.case_id].image.shape[0] == 4  # one case, four channels
    assert cached[one.case_id].has("label")


def test_3d_spleen_task_and_a_wrong_channel_count(msd, tmp_path):
    root, _, spleen = msd
    cases, bad = scan_folder(spleen, progress=False)
    assert bad == [] and len(cases) == 1
    (case,) = cases
    assert case.modality == "CT" and len(case.image) == 1 and case.image[0].endswith("imagesTr/spleen_2.nii.gz")
    assert case.label.endswith("labelsTr/spleen_2.nii.gz")
    meta = json.loads((spleen / "dataset.json").read_text())
    meta["modality"] = {"0": "CT", "1": "PET"}  # says two channels; the files have one
    (spleen / "dataset.json").write_text(json.dumps(meta))
    try:
        cases, bad = scan_folder(spleen, progress=False)
    finally:
        meta["modality"] = {"0": "CT"}
        (spleen / "dataset.json").write_text(json.dumps(meta))
    problems = dict(bad)
    assert not cases and len(bad) == 2  # the image, and its label that then pairs with nothing
    assert "dataset.json names 2 channel(s) (CT, PET) but the image has 1" in problems[case.image[0]]
    assert "unpaired label map" in problems[case.label]


def test_a_channel_path_names_the_file_and_the_channel(msd):
    _, brain, _ = msd
    from medmae.io.errors import ScanError

    with pytest.raises(ScanError, match="4D image has 4"):
        read_volume(f"{brain}/imagesTr/BRATS_001.nii.gz#c7")
    with pytest.raises(ScanError, match="not 4D"):
        read_volume(f"{DATA}/spine_t2.nii.gz#c0")
    with pytest.raises(ScanError, match="4D image"):  # without a channel a 4D file is still refused
        read_volume(brain / "imagesTr" / "BRATS_001.nii.gz")
