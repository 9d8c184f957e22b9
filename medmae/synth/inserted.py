"""Real lesion shapes inserted into a real healthy brain (issue 20's development set).

The stroke masks of ``shared/data/brain/stroke_lesion_masks_mni`` are in MNI space. nilearn's
MNI152 2009 T1 template (installed, no download) is registered affinely (SimpleITK, Mattes
mutual information) to the healthy subject's T1; the same transform carries a mask onto any
scan of that subject that shares its world space (IXI002's T2). The lesion is then made
hyperintense by a fixed multiplicative gain, feathered over 1 mm at its edge and kept inside
the brain, so the tissue texture underneath survives:

    out = image * (1 + gain * w),   w = Gaussian(mask, sigma 1 mm) inside the brain, else 0

A voxel is labelled lesion where w >= 0.5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage


def mni_template() -> Path:
    """nilearn's MNI152 2009 T1 template at 1 mm (skull-stripped)."""
    import nilearn

    path = Path(nilearn.__file__).parent / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: nilearn's MNI152 template is missing (reinstall nilearn)")
    return path


def register_mni(subject_t1: str | Path, seed: int = 0) -> sitk.Transform:
    """Affine transform mapping ``subject_t1`` world points to MNI points (ITK's convention:
    resampling an MNI image with it puts that image on the subject's grid)."""
    fixed = sitk.ReadImage(str(subject_t1), sitk.sitkFloat32)
    moving = sitk.ReadImage(str(mni_template()), sitk.sitkFloat32)
    init = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(3),
                                             sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.05, seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-4, 200)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    reg.SetInitialTransform(init, inPlace=False)
    return reg.Execute(fixed, moving)


def mask_on(reference: str | Path, mni_mask: str | Path, transform: sitk.Transform) -> np.ndarray:
    """The MNI mask resampled (linear, >= 0.5) onto ``reference``'s grid, as a nibabel-order
    (X, Y, Z) bool array."""
    ref = sitk.ReadImage(str(reference))
    mask = sitk.ReadImage(str(mni_mask), sitk.sitkFloat32)
    out = sitk.Resample(mask, ref, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return np.transpose(sitk.GetArrayFromImage(out), (2, 1, 0)) >= 0.5


def insert(image: np.ndarray, lesion: np.ndarray, brain: np.ndarray, spacing: tuple[float, ...],
           gain: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y, Z) image, lesion and brain masks -> (brightened image, lesion label).

    ``gain`` > 0 brightens (T2/FLAIR-like lesion), < 0 darkens; see the module docstring."""
    if image.shape != lesion.shape or image.shape != brain.shape:
        raise ValueError(f"image {image.shape}, lesion {lesion.shape} and brain {brain.shape} differ in shape")
    w = ndimage.gaussian_filter(lesion.astype(np.float32), sigma=[1.0 / s for s in spacing]) * brain
    label = w >= 0.5
    if not label.any():
        raise ValueError("the lesion does not overlap the brain")
    return (image * (1.0 + gain * w)).astype(np.float32), label
