"""The montage in radiological convention: a marker on the patient's left lands on the viewer's right."""

import matplotlib.image as mpimg
import nibabel as nib
import numpy as np
import pytest

from medmae.config.base import load_config
from medmae.heads.anomaly.montage import LETTERS, save_montage
from medmae.io.manifest import Case
from medmae.preprocess.case import prepare_case
from medmae.preprocess.config import PreprocessConfig


def _scan(tmp_path, marker: bool):
    """A head-like ellipsoid stored in LAS order (i runs to the patient's LEFT), a bright blob at
    world x = -30 mm (left), y = +25 mm (anterior), z = +20 mm (superior)."""
    shape, s = (48, 56, 48), 3.0
    affine = np.diag([-s, s, s, 1.0])
    affine[:3, 3] = [shape[0] / 2 * s, -shape[1] / 2 * s, -shape[2] / 2 * s]
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(float)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    a = 100.0 + 5 * np.sin(world[..., 1] / 7.0)
    a = np.where(((world / [60, 70, 60]) ** 2).sum(-1) < 1, a, 0.0)
    if marker:
        a[((world - [-30.0, 25.0, 20.0]) ** 2).sum(-1) < 6.0 ** 2] = 400.0
    path = tmp_path / f"head_{int(marker)}.nii.gz"
    nib.save(nib.Nifti1Image(a.astype(np.float32), affine), path)
    return path


def _render(tmp_path, marker: bool):
    cfg = load_config(PreprocessConfig, None, ["spacing=[3.0,3.0,3.0]", "priors.supervoxels=0"])
    image, maps, meta = prepare_case(Case(f"m{int(marker)}", [str(_scan(tmp_path, marker))], "MR"), cfg, priors=False)
    preview = {"image": image[0], "body": maps["body"].astype(np.uint8), "spacing": np.asarray(meta["spacing"]),
               "map_model": np.zeros(image.shape[1:], np.float32)}
    # views through the marker's world position (-30, 25, 20) mm, found through the preview's affine
    ijk = np.linalg.solve(meta["affine"][:3, :3], np.array([-30.0, 25.0, 20.0]) - meta["affine"][:3, 3])
    point = tuple(int(round(v)) for v in ijk)
    path, _, layout = save_montage(preview, tmp_path / f"m{int(marker)}.png", 1.0, "case $x^2$ id", [point])
    return mpimg.imread(path)[..., :3], layout


def test_left_marker_lands_on_viewer_right(tmp_path):
    with_marker, layout = _render(tmp_path, True)
    without, _ = _render(tmp_path, False)
    diff = np.abs(with_marker - without).sum(-1) > 0.5
    seen = {}
    for panel in layout:
        left, top, right, bottom = (int(round(v)) for v in panel["box"])
        rows, cols = np.nonzero(diff[top:bottom, left:right])
        assert rows.size > 10, panel["plane"]
        seen[panel["plane"]] = (cols.mean() / (right - left), rows.mean() / (bottom - top))
        # the crosshair of the listed region sits on the marker (within 5% of the view)
        cx, cy = panel["cross"]
        assert abs(cx - left - cols.mean()) < 0.05 * (right - left), panel
        assert abs(cy - top - rows.mean()) < 0.05 * (bottom - top), panel
    # axial and coronal: patient's left on the viewer's right; anterior / superior at the top
    assert seen["axial"][0] > 0.55 and seen["axial"][1] < 0.45, seen
    assert seen["coronal"][0] > 0.55 and seen["coronal"][1] < 0.45, seen
    # sagittal: anterior on the viewer's left, superior at the top
    assert seen["sagittal"][0] < 0.45 and seen["sagittal"][1] < 0.45, seen


def test_letters_on_every_panel_and_plain_text_title(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    shape = (20, 20, 20)
    preview = {"image": np.random.default_rng(0).normal(size=shape).astype(np.float32),
               "body": np.ones(shape, np.uint8), "map_model": np.zeros(shape, np.float32),
               "binary": np.zeros(shape, np.uint8), "label": np.zeros(shape, np.uint8)}
    preview["binary"][8:12, 8:12, 8:12] = 1
    preview["label"][9:13, 9:13, 9:13] = 1
    # a case id that mathtext cannot parse must not crash the montage
    path, _, layout = save_montage(preview, tmp_path / "t.png", 0.5, "case $\\frac{ id", [(10, 10, 10), (5, 5, 5)])
    assert path.stat().st_size > 10000 and len(layout) == 6
    assert LETTERS["axial"] == ("R", "L", "A", "P")
