"""`segment evaluate` measures Dice and HD95 on each scan's SOURCE grid, as a viewer shows the
segmentation: on the real CT (3 mm, its TotalSegmentator organs) cached at 6 mm, a model that
is perfect on the cached grid (it predicts the cached reference) scores Dice 1 / HD95 0 there,
but not against the scan's own label file; the source-grid numbers are MONAI's on the mapped
prediction. The manifest must be the one the cache was built from."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance

from medmae.data.cache import list_cases
from medmae.heads.segmentation.classmap import lookup_table, to_classes
from medmae.heads.segmentation.evaluate import EvaluateConfig, evaluate_model
from medmae.heads.segmentation.metrics import one_hot
from medmae.heads.segmentation.predict import Segmenter
from medmae.io.manifest import Case, write_manifest
from medmae.io.read import read_volume
from medmae.preprocess.batch import preprocess_manifest
from medmae.preprocess.config import PreprocessConfig
from medmae.preprocess.inverse import to_source_grid

DATA = Path(__file__).resolve().parents[2] / "data"
CLASSES = {"liver": [5], "spleen": [1], "kidneys": [2, 3]}


class CachedGridOracle(Segmenter):
    """Predicts each case's cached reference: perfect on the cached grid."""

    def predict_cached_grid(self, image, overlap=None):
        for x, classes in self.meta["oracle"]:
            if np.array_equal(x, image):
                return torch.from_numpy(classes)
        raise AssertionError("unknown image")


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg_grid")
    for name in ("ct_abdomen_3mm.nii.gz", "ct_abdomen_3mm_seg.nii.gz"):
        shutil.copy(DATA / name, root / name)
    case = Case("ct", [str(root / "ct_abdomen_3mm.nii.gz")], "CT", label=str(root / "ct_abdomen_3mm_seg.nii.gz"),
                split="test")
    manifest = write_manifest([case], root / "manifest.csv")
    cfg = PreprocessConfig(spacing=(6.0, 6.0, 6.0), workers=0)
    cfg.priors.supervoxels = 0
    report = preprocess_manifest(manifest, root / "cache", cfg, progress=False)
    assert len(report.done) == 1 and not report.bad
    (cached,) = list_cases(root / "cache", "test")
    lut = lookup_table(CLASSES)
    oracle = [(np.asarray(cached.image), to_classes(np.asarray(cached.map("label")), lut))]
    seg = CachedGridOracle(None, {"label_map": "label", "classes": CLASSES, "oracle": oracle}, torch.device("cpu"))
    return root, manifest, cached, seg


def _by_class(rows):
    return {r["class"]: r for r in rows if r["corruption"] == "clean"}


def test_dice_and_hd95_on_the_source_grid(ct):
    root, manifest, cached, seg = ct
    on_cache = _by_class(evaluate_model(seg, str(root / "cache"), EvaluateConfig(split="test")))
    on_source = _by_class(evaluate_model(seg, str(root / "cache"), EvaluateConfig(split="test",
                                                                               manifest=str(manifest))))
    assert {r["grid"] for r in on_cache.values()} == {"cached"}
    assert {r["grid"] for r in on_source.values()} == {"source"}
    # what the user sees: the 6 mm prediction mapped onto the 3 mm scan, against its own labels
    src = read_volume(root / "ct_abdomen_3mm_seg.nii.gz")
    ref = to_classes(np.asarray(src.array), lookup_table(CLASSES))
    pred = np.rint(to_source_grid(seg.meta["oracle"][0][1], cached.meta, order=0)).astype(np.int64)
    p, r = one_hot(torch.from_numpy(pred), 4), one_hot(torch.from_numpy(ref), 4)
    dice = compute_dice(p, r, include_background=False)[0]
    hd = compute_hausdorff_distance(p, r, percentile=95, spacing=[3.0, 3.0, 3.0])[0]
    for k, name in enumerate(CLASSES):
        assert on_cache[name]["dice"] == pytest.approx(1.0) and on_cache[name]["hd95"] == pytest.approx(0.0)
        assert on_source[name]["dice"] == pytest.approx(float(dice[k]), abs=1e-6)
        assert on_source[name]["hd95"] == pytest.approx(float(hd[k]), abs=1e-5)
        assert 0.5 < on_source[name]["dice"] < 0.99 and on_source[name]["hd95"] >= 3.0
        assert on_source[name]["missed"] == 0


def test_the_manifest_must_be_the_cached_one(ct, tmp_path):
    root, manifest, _, seg = ct
    other = tmp_path / "other"
    other.mkdir()
    label = read_volume(root / "ct_abdomen_3mm_seg.nii.gz")
    import nibabel as nib

    changed = np.asarray(label.array).copy()
    changed[changed == 5] = 0  # the liver taken out of the label file after caching
    nib.save(nib.Nifti1Image(changed.astype(np.int16), label.affine), other / "seg.nii.gz")
    case = Case("ct", [str(root / "ct_abdomen_3mm.nii.gz")], "CT", label=str(other / "seg.nii.gz"), split="test")
    bad = write_manifest([case], other / "manifest.csv")
    with pytest.raises(ValueError, match=r"manifest.csv: case 'ct': its files differ"):
        evaluate_model(seg, str(root / "cache"), EvaluateConfig(split="test", manifest=str(bad)))
    write_manifest([Case("else", case.image, "CT", label=case.label, split="test")], other / "m2.csv")
    with pytest.raises(ValueError, match="no case 'ct'"):
        evaluate_model(seg, str(root / "cache"), EvaluateConfig(split="test", manifest=str(other / "m2.csv")))
