"""Corruptions: deterministic under a seed, and they change the image by the configured amount."""

import numpy as np
import pytest
from nilearn.datasets import load_mni152_template

from medmae.heads.segmentation.corrupt import KINDS, corrupt


@pytest.fixture(scope="module")
def brain():
    """MNI152 at 4 mm, scaled to [0, 1] like a normalised scan: (1, X, Y, Z)."""
    img = np.asarray(load_mni152_template(resolution=4).get_fdata(), dtype=np.float32)
    return (img / img.max())[None]


@pytest.mark.parametrize("kind,strength", [("noise", 0.1), ("bias", 0.5), ("motion", 5.0), ("ghosting", 0.5),
                                           ("cubes", 0.1), ("lowres", 3.0)])
def test_deterministic_and_changes_the_image(brain, kind, strength):
    a = corrupt(brain, kind, strength, seed=1, spacing=(4, 4, 4))
    assert a.shape == brain.shape and a.dtype == np.float32
    assert np.array_equal(a, corrupt(brain, kind, strength, seed=1, spacing=(4, 4, 4)))
    assert not np.allclose(a, brain, atol=1e-3)
    if kind != "lowres":  # downsampling by a set factor draws nothing
        assert not np.array_equal(a, corrupt(brain, kind, strength, seed=2, spacing=(4, 4, 4)))
    assert np.array_equal(corrupt(brain, kind, 0.0 if kind != "lowres" else 1.0, 1), brain)


def test_amounts(brain):
    noise = corrupt(brain, "noise", 0.1, 0) - brain
    assert abs(noise.std() - 0.1) < 0.005 and abs(noise.mean()) < 0.005
    ramp = brain + 1 + np.arange(brain.size, dtype=np.float32).reshape(brain.shape) / brain.size  # no ties
    covered = (corrupt(ramp, "cubes", 0.2, 0) != ramp).mean()
    side = min(brain.shape[1:]) // 8
    assert 0.2 <= covered < 0.2 + side ** 3 / brain.size + 1e-6  # stops at the first cube past 20 %
    # thicker slices: along axis 2 neighbouring slices become more alike, the other axes not
    thick = corrupt(brain, "lowres", 4.0, 0, spacing=(4, 4, 4))
    dz = lambda v: np.abs(np.diff(v, axis=3)).mean()  # noqa: E731
    dx = lambda v: np.abs(np.diff(v, axis=1)).mean()  # noqa: E731
    assert dz(thick) < 0.7 * dz(brain) and abs(dx(thick) - dx(brain)) < 0.3 * dx(brain)
    # stronger is more: mean absolute change grows with strength
    for kind, (weak, strong) in {"bias": (0.2, 0.8), "motion": (2.0, 8.0), "ghosting": (0.2, 0.8)}.items():
        change = [np.abs(corrupt(brain, kind, s, 3, (4, 4, 4)) - brain).mean() for s in (weak, strong)]
        assert change[1] > change[0] > 0, (kind, change)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(brain, "blur", 1.0, 0)
    assert set(KINDS) == {"noise", "bias", "motion", "ghosting", "cubes", "lowres"}
