"""Hotspot peaks with ties (issue 20, item 8): where preprocessing clips intensities, a
lesion's voxels and scattered bright voxels share the top value; the region must win."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medmae.heads.anomaly.findings import find_regions, hotspots
from medmae.heads.anomaly.maps import intensity_baseline
from medmae.io.manifest import Case
from medmae.preprocess.case import prepare_case
from medmae.preprocess.config import PreprocessConfig

BRAIN = Path(__file__).resolve().parents[4] / "shared" / "data" / "brain"  # ../shared beside the repository


def _tied_map():
    """A clipped map: scattered lone voxels first in array order, then a 9-voxel-wide blob, all at 3.0."""
    rng = np.random.default_rng(0)
    body = np.ones((40, 40, 40), bool)
    m = rng.uniform(0, 1, body.shape).astype(np.float32)
    m[2, 5, 7] = m[3, 30, 20] = m[6, 12, 33] = 3.0
    blob = np.zeros_like(body)
    blob[20:29, 20:29, 20:29] = True
    m[blob] = 3.0
    return m, body, blob


def test_tied_peaks_go_to_the_region_not_to_the_first_voxel_in_array_order():
    m, body, blob = _tied_map()
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    first = hotspots(m, body, affine)[0]
    assert (first & blob).sum() == blob.sum()
    binary = (m >= 3.0)  # components of one tied peak value: the blob ranks first
    found = find_regions(m, binary, body, affine)
    assert found[0].volume_ml == pytest.approx(blob.sum() * 1.5 ** 3 / 1000)
    assert [f.peak for f in found] == sorted((f.peak for f in found), reverse=True)


def test_the_intensity_baselines_first_hotspot_is_on_a_real_flair_glioma():
    """TCGA-DU-7294 FLAIR preprocessed at 1.5 mm as the brain recipe does (intensities clipped at
    the body's high percentile): the bright-side baseline's top value is shared by the tumour and
    by scattered voxels elsewhere; the first hotspot must be on the tumour (BraTS pseudo-label)."""
    g = BRAIN / "glioma_TCGA-DU-7294"
    if not (g / "flair.nii.gz").is_file():
        pytest.skip("development brains (../shared/data/brain) not present")
    case = Case("du7294", [str(g / "flair.nii.gz")], "MR", sequence="flair", label=str(g / "tumour_pseudolabel.nii.gz"))
    image, maps, _ = prepare_case(case, PreprocessConfig.model_validate({"spacing": [1.5, 1.5, 1.5]}), priors=False)
    body, lesion = maps["body"] > 0, maps["label"] > 0
    base = intensity_baseline(image, body, 0, "brighter")
    top = base[body].max()
    assert (base[body & ~lesion] == top).any()  # the tie the rule is for
    first = hotspots(base, body, np.diag([1.5, 1.5, 1.5, 1.0]))[0]
    assert (first & lesion).sum() > 0.5 * first.sum()
