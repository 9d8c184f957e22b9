"""The mid-sagittal plane estimate on a real brain (MNI152) and on known reflections."""

import numpy as np
import pytest

from medmae.preprocess.midline import estimate_midline, reflection_score


@pytest.fixture(scope="module")
def mni():
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template
    img = load_mni152_template(resolution=2)
    mask = load_mni152_brain_mask(resolution=2)
    return np.asarray(img.get_fdata(), np.float32), np.asarray(mask.get_fdata()) > 0, img.affine


def test_mni152_midline_is_world_x0(mni):
    image, brain, affine = mni
    assert affine[0, 0] > 0  # RAS: axis 0 runs left -> right
    x0 = -affine[0, 3] / affine[0, 0]  # voxel index of world x = 0, the template's midline
    assert abs(estimate_midline(image, brain) - x0) <= 1.0


def test_midline_follows_an_off_centre_crop(mni):
    """A crop that keeps more of one hemisphere still finds the anatomical midline."""
    image, brain, affine = mni
    x0 = -affine[0, 3] / affine[0, 0]
    crop = slice(20, image.shape[0])
    found = estimate_midline(image[crop], brain[crop])
    assert abs(found - (x0 - 20)) <= 1.0
    centre_of_crop = (image.shape[0] - 20 - 1) / 2
    assert abs(centre_of_crop - (x0 - 20)) > 8  # the crop's centre would be far off


def test_exact_on_a_mirrored_volume():
    from scipy.ndimage import gaussian_filter
    rng = np.random.default_rng(0)
    half = gaussian_filter(rng.normal(size=(13, 20, 20)), 1.5).astype(np.float32) + 5.0
    vol = np.concatenate([half, half[::-1]])  # mirror plane at 12.5 (between voxels 12 and 13)
    vol = np.pad(vol, ((3, 9), (0, 0), (0, 0)))  # plane now at 15.5
    assert estimate_midline(vol, vol != 0) == pytest.approx(15.5, abs=0.05)
    assert reflection_score(vol, vol != 0, 31) == pytest.approx(1.0)


def test_strided_estimate_lands_on_the_full_one(mni):
    from medmae.preprocess.midline import midline_meta
    image, brain, affine = mni
    full = midline_meta(image, brain)
    strided = midline_meta(image, brain, max_voxels=100_000)  # every 3rd voxel
    assert full["axis"] == 0 and full["score"] > 0.9
    assert abs(strided["index"] - full["index"]) <= 1.0


def test_preprocessed_case_stores_the_midline_in_its_meta(mni, tmp_path):
    """MNI152 through the preprocessing pipeline: the stored plane is world x = 0."""
    import nibabel as nib

    from medmae.io.manifest import Case
    from medmae.preprocess.case import prepare_case
    from medmae.preprocess.config import PreprocessConfig

    image, _, affine = mni
    path = tmp_path / "mni.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), str(path))
    cfg = PreprocessConfig(spacing=(3.0, 3.0, 3.0), workers=0)
    cfg.priors.supervoxels = 0
    cached, maps, meta = prepare_case(Case(case_id="mni", image=[str(path)], modality="MR"), cfg, priors=False)
    mid = meta["midline"]
    assert set(mid) == {"axis", "index", "score"} and mid["axis"] == 0 and mid["score"] > 0.9
    world_x = np.asarray(meta["affine"])[0] @ [mid["index"], 0, 0, 1]
    assert abs(world_x) <= 3.0  # within one cached voxel of the template's midline
    assert 0 < mid["index"] < cached.shape[1] - 1


def test_rerun_adds_the_midline_to_a_cache_built_without_it(tmp_path, manifest_factory):
    """A case cached before meta.json held the plane is skipped on a re-run but gains it."""
    import json

    from medmae.io.manifest import Case
    from medmae.preprocess.batch import preprocess_manifest
    from pp_helpers import BRAIN, small_config

    cfg = small_config()
    cfg.priors.supervoxels = 0
    manifest = manifest_factory([Case(case_id="brain", image=[str(BRAIN)], modality="MR")])
    preprocess_manifest(manifest, tmp_path / "cache", cfg, progress=False)
    meta_path = tmp_path / "cache" / "cases" / "brain" / "meta.json"
    meta = json.loads(meta_path.read_text())
    stored = meta.pop("midline")
    image_before = (meta_path.parent / "image.npy").stat().st_mtime_ns
    meta_path.write_text(json.dumps(meta))  # as an older medmae wrote it
    report = preprocess_manifest(manifest, tmp_path / "cache", cfg, progress=False)
    assert len(report.skipped) == 1 and not report.done
    assert json.loads(meta_path.read_text())["midline"] == stored
    assert (meta_path.parent / "image.npy").stat().st_mtime_ns == image_before  # arrays untouched
