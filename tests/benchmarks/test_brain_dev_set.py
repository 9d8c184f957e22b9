"""The development set's builder (benchmarks/brain_dev_set.py): the documented command, run
with a relative --out from another folder, writes manifests that the study can read."""

import os
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import brain_dev_set  # noqa: E402

from medmae.io.manifest import read_manifest  # noqa: E402
from medmae.studies.plan import build_plan  # noqa: E402
from medmae.studies.spec import load_study  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_a_relative_out_gives_manifests_whose_files_exist_and_hold_the_inserted_lesions(tmp_path):
    if not (brain_dev_set.DATA / "healthy_IXI002" / "t2.nii.gz").is_file():
        pytest.skip("development brains (../shared/data/brain) not present")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:  # the documented command, from the repository's root
        lesions, healthy = brain_dev_set.build(Path("studies") / "brain_lesions_data")
    finally:
        os.chdir(cwd)
    cases = read_manifest(lesions)
    assert [c.case_id for c in cases][:2] == ["glioma_TCGA-DU-7294", "glioma_TCGA-FG-6692"]
    for c in cases + read_manifest(healthy):
        for f in (*c.image, c.mask, c.label):
            assert f == "" or Path(f).is_file(), f
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert all(p.parts[:2] == ("studies", "brain_lesions_data") for p in written)  # nothing outside --out
    ixi = nib.load(brain_dev_set.DATA / "healthy_IXI002" / "t2.nii.gz")
    for c in cases[2:]:
        img = np.asarray(nib.load(c.image[0]).dataobj, np.float32)
        label = np.asarray(nib.load(c.label).dataobj) > 0
        ml = label.sum() * np.prod(ixi.header.get_zooms()[:3]) / 1000
        assert 2.0 < ml < 20.0, (c.case_id, ml)  # 3.4 and 15.5 ml in the brain
        ratio = img[label].mean() / np.asarray(ixi.dataobj, np.float32)[label].mean()
        assert 1.4 < ratio < 1.7, (c.case_id, ratio)  # gain 0.6, feathered
    # the shipped study plans on this data as documented: every config resolves, every manifest reads
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    shutil.copy(ROOT / "studies" / "brain_lesions_cpu.yaml", tmp_path / "studies")
    spec, root = load_study(tmp_path / "studies" / "brain_lesions_cpu.yaml")
    steps = build_plan(spec, root, tmp_path / "studies" / "brain_lesions_cpu.yaml")
    assert {("pretrain", "plain-s0"), ("pretrain", "trimmed-s0"), ("anomaly", "plain-s0"),
            ("anomaly", "trimmed-s0")} <= {(s.kind, s.name) for s in steps}
