"""`anomaly score`: maps on the source grid (RAS, non-RAS, DICOM input), draws, determinism."""

import csv
import json
import logging

import nibabel as nib
import numpy as np
import torch

from anomaly_helpers import flipped_copy, write_dicom_series
from medmae.heads.anomaly.config import AnomalyConfig
from medmae.heads.anomaly.draws import complementary_draws, token_units, unit_draws
from medmae.export.pretrained import load_model
from medmae.heads.anomaly.run import NORM_PIX_WARNING, score_inputs
from medmae.heads.anomaly.scorer import window_sums
from medmae.io.manifest import read_manifest
from medmae.io.read import read_volume
from medmae.preprocess.case import prepare_case
from medmae.preprocess.spatial import resample_to_grid

OUTPUTS = ("anomaly", "spread", "reconstruction", "baseline", "combined", "body")


def test_maps_lie_on_the_source_grid(pretrained, tmp_path):
    lesion = read_manifest(pretrained.lesions)[0]
    healthy = read_manifest(pretrained.healthy_test)[0]
    lps = flipped_copy(healthy.image[0], tmp_path / "lps_t1.nii.gz")
    dicom = write_dicom_series(healthy.image[0], tmp_path / "dicom_t1")
    result = score_inputs([lesion.image[0], str(lps), str(dicom)], pretrained.run, tmp_path / "out",
                          AnomalyConfig(), progress=False)
    assert not result.bad and len(result.records) == 3
    assert not nib.aff2axcodes(nib.load(lps).affine) == ("R", "A", "S")
    ids = {r["case_id"]: r for r in result.records}
    by_input = {"lesion": lesion.case_id, "lps": "lps_t1", "dicom": next(i for i in ids if i.startswith("dicom_t1"))}
    assert set(by_input.values()) == set(ids)
    for key, path in (("lesion", lesion.image[0]), ("lps", lps), ("dicom", dicom)):
        ref = read_volume(path)
        folder = tmp_path / "out" / "cases" / by_input[key]
        for name in OUTPUTS:
            out = nib.load(folder / f"{name}.nii.gz")
            assert out.shape == ref.array.shape, (path, name)
            assert np.allclose(out.affine, ref.affine, atol=1e-3), (path, name)
        recon = nib.load(folder / "reconstruction.nii.gz").get_fdata()
        body = nib.load(folder / "body.nii.gz").get_fdata() > 0
        amap = nib.load(folder / "anomaly.nii.gz").get_fdata()
        assert body.mean() > 0.1 and amap[body].mean() > 0 and amap[~body].max() < 1e-6
        # the expectation is in the scan's own units; the model saw brains only (skull-stripped
        # training phantoms), so it is judged inside the brain (its mask, in world space)
        brain_file = nib.load(lesion.mask if key == "lesion" else healthy.mask)
        brain = resample_to_grid(brain_file.get_fdata().astype(np.float32), brain_file.affine, ref.affine,
                                 ref.array.shape, order=0) > 0.5
        assert brain.sum() > 0.2 * body.sum()
        src = ref.array[brain].astype(float)
        corr = np.corrcoef(recon[brain], src)[0, 1]
        assert corr > 0.2 and abs(recon[brain].mean() - src.mean()) < 0.5 * src.std(), (path, corr)
        record = json.loads((folder / "case.json").read_text())
        assert record["model_digest"] == load_model(pretrained.run).digest and record["covered_fraction"] > 0.95
    # the LPS copy is the same scan as the RAS original it came from: same maps in world space
    with open(tmp_path / "out" / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and len(rows) == 3
    dicom_score, lps_score = ids[by_input["dicom"]]["score"], ids[by_input["lps"]]["score"]
    assert abs(dicom_score - lps_score) < 0.05 * lps_score  # same anatomy through two readers


def test_complementary_draws_hide_every_valid_token_once():
    valid = torch.zeros(200, dtype=torch.bool)
    valid[20:170] = True
    for draws, ratio in ((4, 0.75), (2, 0.5), (3, 0.4), (8, 0.1)):
        masks = complementary_draws(valid, draws, ratio, torch.Generator().manual_seed(0))
        assert masks.shape == (draws, 200)
        assert masks[:, valid].any(0).all() and not masks[:, ~valid].any()
        assert (masks.sum(1) >= round(ratio * 150)).all() and (masks.sum(1) < 150).all()
    again = complementary_draws(valid, 4, 0.75, torch.Generator().manual_seed(0))
    assert torch.equal(again, complementary_draws(valid, 4, 0.75, torch.Generator().manual_seed(0)))


def test_unit_draws_hide_each_unit_in_turn():
    units = torch.zeros(8, 8, 8, dtype=torch.long)
    units[:4], units[4:] = 1, 2
    per_token = token_units(units, (4, 4, 4))
    assert per_token.tolist() == [1] * 4 + [2] * 4
    valid = torch.ones(8, dtype=torch.bool)
    masks = unit_draws(valid, per_token)
    assert masks.tolist() == [[True] * 4 + [False] * 4, [False] * 4 + [True] * 4]
    assert unit_draws(valid, torch.ones(8, dtype=torch.long)).shape == (0, 8)  # nothing left visible


def test_one_pass_equals_the_naive_pass_per_draw(pretrained):
    model = load_model(pretrained.run)
    case = read_manifest(pretrained.lesions)[0]
    image, maps, meta = prepare_case(case, model.preprocess, priors=False)
    cfg = AnomalyConfig().score
    floors = [p["floor"] for p in meta["normalisation"]]
    ours = window_sums(image, maps["body"], None, model, cfg, floors)
    naive = sum(window_sums(image, maps["body"], None, model, cfg, floors, only=(k,)) for k in range(cfg.draws))
    assert np.allclose(ours, naive, atol=1e-4)
    # hemisphere masks over the whole scan: each half reconstructed from the other
    cfg_h = cfg.model_copy(update={"mask": "hemisphere"})
    units = np.zeros(image.shape[1:], np.int16)
    units[: image.shape[1] // 2], units[image.shape[1] // 2:] = 1, 2
    sums = window_sums(image, maps["body"], units, model, cfg_h, floors)
    n = sums[-1]
    assert (n[maps["body"] > 0] > 0).mean() > 0.95


def test_export_scores_like_its_checkpoint_and_norm_pix_warns(pretrained, tmp_path, caplog):
    from medmae.export.files import export_encoder

    ckpt = pretrained.run / "checkpoints" / "latest.pt"
    export_encoder(ckpt, tmp_path / "export")
    from_run, from_export = load_model(pretrained.run), load_model(tmp_path / "export")
    assert from_run.digest == from_export.digest and from_export.kind == "export"
    assert from_export.preprocess == from_run.preprocess and from_export.data == from_run.data
    assert from_run.data["modalities"] == ["MR"] and from_run.data["channels"] == [1]
    state = torch.load(ckpt, weights_only=True)
    state["config"]["model"]["norm_pix_loss"] = True
    state["config"]["model"]["interp_residual"] = False  # refused with norm_pix targets
    torch.save(state, tmp_path / "normpix.pt")
    case = read_manifest(pretrained.healthy_test)[0]
    with caplog.at_level(logging.WARNING):
        result = score_inputs([case.image[0]], tmp_path / "normpix.pt", tmp_path / "out", AnomalyConfig(),
                              progress=False)
    assert result.warnings == [NORM_PIX_WARNING] and "norm_pix_loss" in caplog.text
    assert json.loads((tmp_path / "out" / "settings.json").read_text())["warnings"] == [NORM_PIX_WARNING]


def test_hemisphere_masks_reconstruct_each_half_from_the_other(pretrained):
    from medmae.heads.anomaly.case import analyse_case

    model = load_model(pretrained.run)
    case = read_manifest(pretrained.healthy_test)[0]
    cfg = AnomalyConfig.model_validate({"score": {"mask": "hemisphere", "map": "brighter"}})
    cm = analyse_case(case, model, cfg)
    xs = np.nonzero(cm.body.any(axis=(1, 2)))[0]
    assert abs(cm.midline - (xs.min() + xs.max()) / 2) < 3  # phantom brains are near-symmetric
    assert cm.stats.covered[cm.body].mean() > 0.95
    assert cm.maps["model"].min() >= 0 and cm.maps["model"][~cm.body].max() == 0


def test_brighter_and_darker_maps_see_only_their_side(pretrained, tmp_path):
    """A bright and a dark ball in white matter: the brighter map lights up the bright one only,
    the darker map (same error statistics) the dark one only."""
    from scipy import ndimage

    from medmae.heads.anomaly.case import analyse_case
    from medmae.heads.anomaly.maps import anomaly_map
    from medmae.io.manifest import Case

    model = load_model(pretrained.run)
    case = read_manifest(pretrained.healthy_test)[0]
    img = nib.load(case.image[0])
    data = img.get_fdata().astype(np.float32)
    white = nib.load(case.anatomy).get_fdata() == 3
    depth = ndimage.distance_transform_edt(white)
    half = np.arange(data.shape[0])[:, None, None] < np.argwhere(white)[:, 0].mean()
    grid = np.indices(data.shape)
    label = np.zeros(data.shape, np.uint8)
    for value, side, gain in ((1, half, 1.6), (2, ~half, 0.3)):
        centre = np.unravel_index(np.argmax(np.where(side, depth, 0)), data.shape)
        ball = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= 2.5 ** 2
        data[ball] *= gain
        label[ball] = value
    nib.save(nib.Nifti1Image(data, img.affine), tmp_path / "two_lesions_t1.nii.gz")
    nib.save(nib.Nifti1Image(label, img.affine), tmp_path / "two_lesions_label.nii.gz")
    two = Case("two", [str(tmp_path / "two_lesions_t1.nii.gz")], "MR", sequence="t1",
               label=str(tmp_path / "two_lesions_label.nii.gz"), mask=case.mask)
    cm = analyse_case(two, model, AnomalyConfig.model_validate({"score": {"map": "brighter"}}))
    bright, dark = cm.label == 1, cm.label == 2
    brighter, darker = cm.maps["model"], anomaly_map(cm.stats, "darker", cm.body)
    print(f"brighter map: bright ball {brighter[bright].mean():.3f}, dark ball {brighter[dark].mean():.3f}; "
          f"darker map: bright {darker[bright].mean():.3f}, dark {darker[dark].mean():.3f}")
    assert bright.sum() > 20 and dark.sum() > 20
    assert brighter[bright].mean() > 5 * brighter[dark].mean()
    assert darker[dark].mean() > 5 * darker[bright].mean()


def test_only_hidden_voxels_count_as_scored(pretrained):
    """The count channel of a window is, voxel by voxel, the number of draws that hid its token."""
    from medmae.heads.anomaly.window import DrawPlan, WindowScorer
    from medmae.tokens import token_volume

    model = load_model(pretrained.run)
    net = model.build(model.crop)
    image, maps, _ = prepare_case(read_manifest(pretrained.healthy_test)[0], model.preprocess, priors=False)
    crop = tuple(model.crop)
    start = [(s - c) // 2 for s, c in zip(image.shape[1:], crop)]
    sl = tuple(slice(a, a + c) for a, c in zip(start, crop))
    body = torch.from_numpy(maps["body"][sl].astype(np.float32))
    window = torch.cat([torch.from_numpy(image[(slice(None), *sl)]), body[None], torch.zeros(1, *crop)])[None]
    plan = DrawPlan(structured=False, draws=4, ratio=0.5, min_fraction=0.5, seed=0)
    valid, masks = WindowScorer(net, plan).masks_for(body > 0.5, torch.zeros(crop, dtype=torch.long))
    counts = WindowScorer(net, plan)(window)[0, -1]
    expected = token_volume((masks & valid).sum(0)[None], net.patch_size, net.grid)[0, 0]
    assert valid.any() and (~valid).any()
    assert torch.equal(counts, expected) and counts.max() < 4
