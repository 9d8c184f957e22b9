"""Each crop's mid-sagittal plane ("midline" in the batch) lands on the case's plane through
crop offsets, flips and turns, in the CPU and the device-resident loaders alike."""

import math

import numpy as np
import pytest
import torch
from loader_helpers import loader_cfg

from medmae.preprocess.cache import list_cases
from medmae.data.dataset import CropDataset
from medmae.data.loader import build_loader
from medmae.data.crop_midline import crop_midline

K = (16, 16, 16)
AUG = {"flip_prob": 0.5, "rotate90_prob": 0.5, "intensity_prob": 0.0}


def source_x(code: np.ndarray, shape) -> np.ndarray:
    return (np.asarray(code, np.int64) - 1) // (shape[1] * shape[2])


def check_crop(supervoxels, start, midline, case) -> str:
    """How crop axis 0 maps onto the case's left-right axis ('turned' | 'none' | 'kept' |
    'reversed'), after checking the crop's plane against the case's plane."""
    shape = case.image.shape[1:]
    plane = case.meta.get("midline", {}).get("index")
    along0 = source_x(supervoxels[0, :, K[1] // 2, K[2] // 2], shape)  # source x along crop axis 0
    if len(set(along0.tolist())) == 1:  # a quarter turn: crop axis 0 runs along source y
        assert math.isnan(midline)
        return "turned"
    if plane is None:
        assert math.isnan(midline)
        return "none"
    step = int(along0[1] - along0[0])
    assert step in (-1, 1) and (np.diff(along0) == step).all(), "crop axis 0 must run along source x"
    x0 = along0[0]  # source x of crop voxel 0
    assert x0 == (start[0] if step == 1 else start[0] + K[0] - 1)
    assert midline == pytest.approx(step * (plane - x0), abs=1e-4)  # plane = x0 + step * local
    return "kept" if step == 1 else "reversed"


def crops_of(loader, n_batches):
    for _ in range(n_batches):
        batch = next(loader)
        for b, cid in enumerate(batch["case_id"]):
            yield cid, batch["supervoxels"][b].cpu().numpy(), batch["crop_start"][b].tolist(), \
                float(batch["midline"][b])


@pytest.mark.parametrize("resident", [False, True])
def test_crop_plane_follows_offsets_flips_and_turns(coded_cache, resident):
    cfg = loader_cfg(coded_cache, crop_size=K, priors=["supervoxels"], augment=AUG, device_resident=resident)
    loader = build_loader(cfg, seed=1, device="cpu")
    cases = {c.case_id: c for c in list_cases(coded_cache)}
    seen = {"turned": 0, "none": 0, "kept": 0, "reversed": 0}
    for cid, sv, start, mid in crops_of(loader, 12):
        if cid == "case_005":  # smaller than the crop: padding hides source x at the centre line
            continue
        seen[check_crop(sv, start, mid, cases[cid])] += 1
    assert min(seen.values()) > 0, seen  # every situation met


def test_crop_midline_arithmetic():
    got = crop_midline(np.array([30.5, 30.5, 30.5, np.nan]), np.array([10, 10, -4, 0]), 16,
                       np.array([False, True, False, False]), np.array([True, True, True, True]))
    np.testing.assert_allclose(got[:3], [20.5, 15 - 20.5, 34.5])
    assert np.isnan(got[3])
    assert np.isnan(crop_midline(np.array([5.0]), np.array([0]), 16, np.array([False]), np.array([False]))[0])


def test_missing_midlines_are_reported_once(coded_cache, caplog):
    with caplog.at_level("DEBUG", logger="medmae.data.crop_midline"):
        CropDataset(list_cases(coded_cache), loader_cfg(coded_cache), seed=0)
    lines = [r for r in caplog.records if "no midline" in r.getMessage()]
    # DEBUG: only symmetric masking needs planes, and its preflight warns (tests/training/test_preflight.py);
    # under random masking a user sees nothing about them
    assert len(lines) == 1 and "1 of 6" in lines[0].getMessage() and lines[0].levelname == "DEBUG"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_resident_loader_on_cuda_gives_the_cpu_planes(coded_cache):
    cfg = loader_cfg(coded_cache, crop_size=K, priors=["supervoxels"], augment=AUG, device_resident=True)
    cpu, gpu = build_loader(cfg, seed=1, device="cpu"), build_loader(cfg, seed=1, device="cuda")
    for _ in range(4):
        a, b = next(cpu), next(gpu)
        assert b["midline"].device.type == "cuda"
        assert torch.equal(a["crop_start"], b["crop_start"].cpu())
        assert torch.isclose(a["midline"], b["midline"].cpu(), rtol=0, atol=0, equal_nan=True).all()


def test_planes_with_a_low_score_are_not_used(tmp_path):
    from loader_helpers import make_cache

    from medmae.preprocess.cache import open_case
    from medmae.data.crop_midline import case_midline

    cache = make_cache(tmp_path, [(20, 20, 20)] * 2, without_midline=())
    good, bad = (open_case(c.path) for c in list_cases(cache))
    bad.meta["midline"]["score"] = 0.38  # the test abdomen CT: a plane 79 mm off the spine
    assert case_midline(good) == pytest.approx(0.37 * 20 + 0.25) and math.isnan(case_midline(bad))
