"""Real stroke-lesion shapes carried between grids (medmae/synth/inserted.py)."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medmae.synth.inserted import mask_on, mni_template

STROKE = (Path(__file__).resolve().parents[3] / "shared" / "data" / "brain" / "stroke_lesion_masks_mni"
          / "bwsrsub-1252_lesion.nii.gz")


def test_a_stroke_mask_lands_on_the_template_grid_with_its_volume_and_place():
    """Identity transform: the MNI mask (157x189x136) resampled onto the MNI152 template's grid
    (197x233x189), both 1 mm in MNI world space: same volume, same world centroid."""
    if not STROKE.is_file():
        pytest.skip("development brains not present")
    src = nib.load(STROKE)
    out = mask_on(mni_template(), STROKE, sitk.Transform())
    tmpl = nib.load(mni_template())
    assert out.shape == tmpl.shape
    a = np.asarray(src.dataobj) > 0
    assert abs(out.sum() - a.sum()) / a.sum() < 0.05

    def centroid(mask, affine):
        return affine[:3, :3] @ np.argwhere(mask).mean(0) + affine[:3, 3]

    assert np.linalg.norm(centroid(out, tmpl.affine) - centroid(a, src.affine)) < 1.5  # mm
