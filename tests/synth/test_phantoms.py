"""Phantoms: geometry, labels, contrast, lesions, determinism; written files and manifest."""

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from medmae.cli.main import main
from medmae.io.manifest import read_manifest
from medmae.synth import abdomen, brain
from medmae.synth.phantom import default_grid, make_phantom
from medmae.synth.shapes import SmoothNoise, ellipsoid, rotation_matrix
from medmae.synth.write import case_rng

SMALL_BRAIN = dict(shape=(64, 64, 64), spacing=(3.0, 3.0, 3.0))
SMALL_ABDOMEN = dict(shape=(96, 72, 48), spacing=(4.0, 4.0, 4.7))


@pytest.fixture(scope="module")
def brain_case():
    return make_phantom("brain", case_rng(0, 0), lesions=True, **SMALL_BRAIN)


@pytest.fixture(scope="module")
def abdomen_case():
    return make_phantom("abdomen", case_rng(0, 1), lesions=True, **SMALL_ABDOMEN)


def world_centroid(mask, affine):
    idx = np.argwhere(mask).mean(axis=0)
    return affine[:3, :3] @ idx + affine[:3, 3]


def test_brain_labels_contrast_and_symmetry(brain_case):
    ph = brain_case
    assert ph.image.shape == (64, 64, 64) and ph.image.dtype == np.int16 and ph.modality == "MR"
    assert set(np.unique(ph.anatomy)) == set(brain.BRAIN_LABELS)
    med = {k: np.median(ph.image[ndimage.binary_erosion(ph.anatomy == k)]) for k in (brain.WHITE, brain.GREY, brain.CSF)}
    assert med[brain.WHITE] > med[brain.GREY] > med[brain.CSF]  # T1 ordering
    assert abs(np.linalg.norm(ph.affine[:3, :3], axis=0) - 3.0).max() < 1e-6
    assert np.count_nonzero(ph.affine[:3, :3] - np.diag(np.diag(ph.affine[:3, :3]))) > 0  # oblique grid
    # paired ventricles: one component each side of the midline (world x), mirrored
    comps, n = ndimage.label(ph.anatomy == brain.VENTRICLE)
    xs = sorted(world_centroid(comps == i, ph.affine)[0] for i in range(1, n + 1) if (comps == i).sum() > 5)
    head_x = world_centroid(ph.anatomy > 0, ph.affine)[0]
    assert len(xs) == 2 and xs[0] < head_x < xs[1]
    assert abs((xs[1] - head_x) - (head_x - xs[0])) < 8.0


def test_brain_lesions_sit_in_white_matter(brain_case):
    ph = brain_case
    assert ph.lesion is not None and ph.lesion.dtype == np.uint8
    assert 1 <= len(ph.lesions) <= 4 and ph.lesion.sum() > 0
    assert (ph.anatomy[ph.lesion > 0] == brain.WHITE).all()
    wm = np.median(ph.image[(ph.anatomy == brain.WHITE) & (ph.lesion == 0)])
    lesion_mean = ph.image[ph.lesion > 0].mean()
    assert abs(lesion_mean - wm) > 0.1 * wm  # bright or dark blobs


def test_abdomen_ct_in_hu_with_organs_where_they_belong(abdomen_case):
    ph = abdomen_case
    assert ph.image.dtype == np.int16 and ph.modality == "CT" and ph.image.shape == (96, 72, 48)
    assert nib.aff2axcodes(ph.affine) == ("L", "P", "S")
    assert np.allclose(np.abs(np.diag(ph.affine)[:3]), (4.0, 4.0, 4.7))
    present = set(np.unique(ph.anatomy).tolist())
    for organ in (abdomen.SPLEEN, abdomen.KIDNEY_R, abdomen.KIDNEY_L, abdomen.LIVER, abdomen.AORTA, abdomen.FAT):
        assert organ in present
    assert present <= set(abdomen.ABDOMEN_LABELS)
    liver = ndimage.binary_erosion(ph.anatomy == abdomen.LIVER, iterations=2) & (ph.lesion == 0)
    assert 40 <= np.median(ph.image[liver]) <= 80
    assert np.median(ph.image[ph.anatomy == 0]) < -900  # air
    assert np.median(ph.image[ph.anatomy == abdomen.FAT]) < -50
    # RAS world: liver and right kidney on the patient's right (+x), spleen and left kidney on the left
    body_x = world_centroid(ph.anatomy > 0, ph.affine)[0]
    for organ, side in ((abdomen.LIVER, 1), (abdomen.KIDNEY_R, 1), (abdomen.SPLEEN, -1), (abdomen.KIDNEY_L, -1)):
        assert side * (world_centroid(ph.anatomy == organ, ph.affine)[0] - body_x) > 20


def test_abdomen_lesions_are_hypodense_and_inside_the_liver(abdomen_case):
    ph = abdomen_case
    assert ph.lesion.sum() > 0
    assert (ph.anatomy[ph.lesion > 0] == abdomen.LIVER).all()
    liver = np.median(ph.image[(ph.anatomy == abdomen.LIVER) & (ph.lesion == 0)])
    core = ndimage.binary_erosion(ph.lesion > 0)
    assert np.median(ph.image[core if core.any() else ph.lesion > 0]) < liver - 10


def test_same_seed_same_case_and_cases_differ():
    a = make_phantom("brain", case_rng(5, 0), shape=(32, 32, 32), spacing=(6.0, 6.0, 6.0))
    b = make_phantom("brain", case_rng(5, 0), shape=(32, 32, 32), spacing=(6.0, 6.0, 6.0))
    c = make_phantom("brain", case_rng(5, 1), shape=(32, 32, 32), spacing=(6.0, 6.0, 6.0))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.anatomy, b.anatomy)
    assert np.array_equal(a.affine, b.affine)
    assert not np.array_equal(a.anatomy, c.anatomy) and not np.allclose(a.affine, c.affine)
    assert a.lesion is None


def test_default_grid_keeps_the_field_of_view():
    assert default_grid("brain", None, None) == ((96, 96, 96), (2.0, 2.0, 2.0))
    assert default_grid("abdomen", None, None) == ((128, 96, 64), (3.0, 3.0, 3.5))
    shape, spacing = default_grid("brain", (192, 192, 192), None)
    assert spacing == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="unknown phantom kind"):
        default_grid("knee", None, None)
    with pytest.raises(ValueError, match="shape"):
        default_grid("brain", (4, 64, 64), None)


def test_shapes_and_noise():
    pts = np.stack(np.meshgrid(*[np.linspace(-10, 10, 21)] * 3, indexing="ij")).astype(np.float32)
    inside = ellipsoid(pts, (0, 0, 0), (10, 5, 5), rotation_matrix([0, 0, 90]))  # long axis now along y
    assert inside[10, 10 + 8, 10] and not inside[10 + 8, 10, 10]
    noise = SmoothNoise(np.random.default_rng(0), 30.0, scale_mm=10.0)
    v = noise(pts)
    assert v.shape == (21, 21, 21) and 0.3 < v.std() < 2.0
    assert np.abs(np.diff(v, axis=0)).mean() < 0.5 * v.std()  # smooth at 1 mm steps


def test_cli_writes_nifti_and_a_valid_manifest(tmp_path):
    out = tmp_path / "phantoms"
    rc = main(["synth", "--out", str(out), "--kind", "abdomen", "--n", "2", "--lesions", "--seed", "3",
               "--shape", "48", "36", "24", "--spacing", "8", "8", "9.4", "--val-fraction", "0.5"])
    assert rc == 0
    cases = read_manifest(out / "manifest.csv")
    assert [c.case_id for c in cases] == ["abdomen_0000", "abdomen_0001"]
    assert [c.split for c in cases] == ["train", "val"]
    labels = json.loads((out / "labels.json").read_text())["abdomen"]
    assert labels["5"] == "liver" and labels["1"] == "spleen"
    for c in cases:
        assert c.modality == "CT" and c.label and c.anatomy and len(c.sha256) == 64
        img, ana, les = (nib.load(p) for p in (c.image[0], c.anatomy, c.label))
        ref = make_phantom("abdomen", case_rng(3, int(c.case_id[-4:])), (48, 36, 24), (8, 8, 9.4), lesions=True)
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-4)
        assert np.array_equal(np.asarray(img.dataobj), ref.image) and img.get_data_dtype() == np.int16
        assert np.array_equal(np.asarray(ana.dataobj), ref.anatomy)
        assert np.array_equal(np.asarray(les.dataobj), ref.lesion)
        assert img.header["sform_code"] == 1 and img.header["qform_code"] == 1


def test_cli_brain_without_lesions(tmp_path):
    out = tmp_path / "b"
    assert main(["synth", "--out", str(out), "--kind", "brain", "--n", "1", "--shape", "32", "32", "32"]) == 0
    (case,) = read_manifest(out / "manifest.csv")
    assert case.modality == "MR" and case.sequence == "T1" and case.label == "" and case.anatomy
    img = nib.load(case.image[0])
    assert img.shape == (32, 32, 32) and np.allclose(np.linalg.norm(img.affine[:3, :3], axis=0), 6.0, atol=1e-4)


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--kind", "brain", "--n", "0"]) == 2
    assert main(["synth", "--out", str(tmp_path), "--kind", "brain", "--shape", "4", "64", "64"]) == 2
    assert "shape must be 3 sizes >= 8" in capsys.readouterr().err
    assert not (tmp_path / "manifest.csv").exists()


def test_cli_brain_mask_skull_strips_preprocessing(tmp_path, capsys):
    """--brain-mask: the manifest's mask is the intracranial tissue, and preprocessing then
    keeps the brain and drops skull and scalp from the body it trains and scores in."""
    from medmae.config.base import load_config
    from medmae.preprocess.config import PreprocessConfig
    from medmae.preprocess.case import prepare_case

    out = tmp_path / "b"
    assert main(["synth", "--out", str(out), "--kind", "brain", "--n", "1", "--shape", "48", "48", "48",
                 "--brain-mask"]) == 0
    (case,) = read_manifest(out / "manifest.csv")
    mask = nib.load(case.mask).get_fdata() > 0
    anatomy = nib.load(case.anatomy).get_fdata()
    assert (mask == np.isin(anatomy, [brain.CSF, brain.GREY, brain.WHITE, brain.DEEP_GREY, brain.VENTRICLE])).all()
    _, maps, _ = prepare_case(case, load_config(PreprocessConfig, None, ["spacing=[4,4,4]"]), priors=False)
    on_grid = maps["anatomy"][maps["body"]]
    assert not np.isin(on_grid, [brain.SKULL, brain.SCALP, brain.BACKGROUND]).any()
    assert np.isin(on_grid, [brain.WHITE]).mean() > 0.2
    assert main(["synth", "--out", str(tmp_path / "a"), "--kind", "abdomen", "--brain-mask"]) == 2
    assert "no brain mask" in capsys.readouterr().err
