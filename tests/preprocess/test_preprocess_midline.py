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
