"""CropDataset on coded caches: shapes, dtypes, foreground bias, alignment under flips and
turns, padding, missing priors."""

import numpy as np
import pytest
import torch
from conftest import SHAPES
from loader_helpers import loader_cfg, make_cache

from medmae.config.base import ConfigError, load_config
from medmae.training.pretrain_config import PretrainConfig
from medmae.preprocess.cache import list_cases, open_case
from medmae.data.dataset import CropDataset
from medmae.data.crops import crop_starts, foreground_points, read_crop, start_bounds
from medmae.io.errors import ScanError

K = (24, 24, 24)


def cfg_for(cache, **kw):
    return loader_cfg(cache, **{"crop_size": K, "crops_per_volume": 4, "batch_size": 8,
                                "priors": ["anatomy", "supervoxels"], **kw})


def decode(code, shape):
    """Voxel code -> (x, y, z) of the source volume (inverse of coded_case)."""
    c = np.asarray(code, dtype=np.int64) - 1
    return c // (shape[1] * shape[2]), (c // shape[2]) % shape[1], c % shape[2]


def test_crop_shapes_dtypes_and_missing_prior(coded_cache):
    ds = CropDataset(list_cases(coded_cache), cfg_for(coded_cache), seed=0)
    assert len(ds) == 6
    for i in range(len(ds)):
        crops = ds[i]
        assert len(crops) == 4
        for c in crops:
            assert set(c) == {"image", "body", "anatomy", "supervoxels", "crop_start", "midline", "case_id"}
            assert c["image"].shape == (1, *K) and c["image"].dtype == torch.float32
            assert c["body"].shape == (1, *K) and c["body"].dtype == torch.uint8
            assert c["anatomy"].dtype == torch.int16 and c["supervoxels"].dtype == torch.int32
            assert c["case_id"] == f"case_{i:03d}"
    no_anatomy = ds[2]  # case_002 was written without an anatomy map: zeros, still batchable
    assert all(int(c["anatomy"].abs().sum()) == 0 for c in no_anatomy)
    assert all(int(c["supervoxels"].max()) > 0 for c in no_anatomy)


def test_foreground_prob_one_centres_every_crop_on_the_body(coded_cache):
    cfg = cfg_for(coded_cache, foreground_prob=1.0, augment={"flip_prob": 0.0, "intensity_prob": 0.0},
                  crops_per_volume=8, batch_size=8)
    cases = list_cases(coded_cache)
    ds = CropDataset(cases, cfg, seed=3)
    for i in range(5):  # the cases larger than the crop
        body = np.load(cases[i].path / "body.npy")
        for epoch in range(3):
            for c in ds[(epoch, i, i)]:
                centre_code = int(c["supervoxels"][0, K[0] // 2, K[1] // 2, K[2] // 2])
                assert body[decode(centre_code, SHAPES[i])] == 1


def test_foreground_prob_sets_the_share_of_body_centred_crops(coded_cache):
    """With 8^3 crops, a uniform centre lands in the body ball ~ its share r0 of the centre box;
    with foreground_prob=0.5 the share is 0.5 + 0.5 * r0."""
    cases = list_cases(coded_cache)[:5]
    k = (8, 8, 8)
    rate = {}
    for p in (0.0, 0.5):
        cfg = cfg_for(coded_cache, crop_size=k, foreground_prob=p, crops_per_volume=8,
                      augment={"flip_prob": 0.0, "intensity_prob": 0.0})
        ds = CropDataset(cases, cfg, seed=1)
        hits = []
        for e in range(6):
            for i in range(5):
                body = np.load(cases[i].path / "body.npy")
                for c in ds[(e, i, i)]:
                    hits.append(body[decode(int(c["supervoxels"][0, 4, 4, 4]), SHAPES[i])])
        rate[p] = float(np.mean(hits))
    assert 0.05 < rate[0.0] < 0.45
    assert abs(rate[0.5] - (0.5 + 0.5 * rate[0.0])) < 0.12


def test_maps_stay_aligned_with_the_image_under_flips_and_turns(coded_cache):
    cfg = cfg_for(coded_cache, augment={"flip_prob": 0.5, "rotate90_prob": 0.75, "intensity_prob": 0.0})
    ds = CropDataset(list_cases(coded_cache), cfg, seed=5)
    seen_flipped = 0
    for e in range(3):
        for i in range(5):
            for c in ds[(e, i, i)]:
                code = c["image"][0].round().long()
                assert torch.equal(code, c["supervoxels"][0].long())
                assert torch.equal(code % 30000, c["anatomy"][0].long()) or i == 2
                # neighbours along z differ by +-1 (no flip: +1) or by +-Z, +-Y*Z after a turn
                seen_flipped += int((code[0, 0, 1] - code[0, 0, 0]).item() != 1)
    assert seen_flipped > 0  # augmentations did happen


def test_intensity_augmentation_is_affine_per_crop(coded_cache):
    cfg = cfg_for(coded_cache, augment={"flip_prob": 0.0, "intensity_prob": 1.0,
                                        "intensity_scale": 0.2, "intensity_shift": 0.5})
    crops = CropDataset(list_cases(coded_cache), cfg, seed=2)[0]
    for c in crops:
        code = c["supervoxels"][0].double().flatten()
        img = c["image"][0].double().flatten()
        a, b = np.polyfit(code.numpy(), img.numpy(), 1)
        assert 0.8 <= a <= 1.2 and a != 1.0
        assert np.allclose(img.numpy(), a * code.numpy() + b, atol=0.05)


def test_small_volume_is_padded(coded_cache):
    cfg = cfg_for(coded_cache, pad_value=-7.0, augment={"flip_prob": 0.0, "intensity_prob": 0.0})
    cases = list_cases(coded_cache)
    ds = CropDataset(cases, cfg, seed=0)
    shape = SHAPES[5]  # (20, 50, 16) with a 24^3 crop: x and z padded, y cropped
    for c in ds[5]:
        inside = c["supervoxels"][0] > 0
        assert int(inside.sum()) == shape[0] * K[1] * shape[2]  # every x and z of the volume, 24 of y
        assert bool((c["image"][0][~inside] == -7.0).all())
        assert int(c["body"][0][~inside].sum()) == 0
        xs, _, zs = decode(c["supervoxels"][0][inside].numpy(), shape)
        assert set(xs.tolist()) == set(range(shape[0])) and set(zs.tolist()) == set(range(shape[2]))


def test_read_crop_and_start_bounds():
    a = np.arange(5 * 6 * 7).reshape(1, 5, 6, 7)
    np.testing.assert_array_equal(read_crop(a, (1, 2, 3), (2, 3, 4), -1), a[:, 1:3, 2:5, 3:7])
    out = read_crop(a, (-2, 4, 0), (4, 4, 7), -1)
    assert out.shape == (1, 4, 4, 7)
    np.testing.assert_array_equal(out[:, 2:, :2], a[:, :2, 4:6])
    assert (out[:, :2] == -1).all() and (out[:, :, 2:] == -1).all()
    lo, hi = start_bounds((5, 30, 10), (8, 8, 10))
    assert lo.tolist() == [-3, 0, 0] and hi.tolist() == [0, 22, 0]


def test_crop_starts_and_foreground_points_are_valid():
    body = np.zeros((30, 30, 30), np.uint8)
    body[2:6, 10:20, 10:20] = 1  # body near the x border: few voxels can be exact centres
    rng = np.random.default_rng(0)
    pts = foreground_points(body, (16, 16, 16), 100, rng)
    assert len(pts) > 0 and pts.dtype == np.uint16
    assert (body[tuple(pts.T)] == 1).all()
    starts = crop_starts((30, 30, 30), (16, 16, 16), 200, pts, 1.0, rng)
    assert starts.min() >= 0 and starts.max() <= 14
    # body only near x=2..5: no valid exact centre in x (needs >= 8), so crops hold the point instead
    for s in starts:
        assert body[s[0]:s[0] + 16, s[1]:s[1] + 16, s[2]:s[2] + 16].any()


def test_config_validation():
    with pytest.raises(ConfigError, match="multiple of crops_per_volume"):
        load_config(PretrainConfig, None, ["data.batch_size=6", "data.crops_per_volume=4"])
    with pytest.raises(ConfigError, match="crop_size"):
        load_config(PretrainConfig, None, ["data.augment.rotate90_prob=0.5", "data.crop_size=[32,16,16]"])
    cfg = load_config(PretrainConfig, None, ["data.priors=[anatomy,body,anatomy]"])
    assert cfg.data.maps == ["body", "anatomy"]


def test_cases_open_lazily(coded_cache):
    case = open_case(coded_cache / "cases" / "case_000")
    assert isinstance(case.image, np.memmap)


def test_broken_cache_files_are_named(tmp_path):
    cache = make_cache(tmp_path / "c", [(20, 20, 20), (20, 20, 20)])
    image = cache / "cases" / "case_001" / "image.npy"
    image.write_bytes(image.read_bytes()[:100])  # truncated
    with pytest.raises(ScanError, match="case_001/image.npy: cannot open cached array"):
        CropDataset(list_cases(cache), cfg_for(cache))
    np.save(image, np.zeros((1, 20, 20, 20), np.float32))
    np.save(cache / "cases" / "case_001" / "anatomy.npy", np.zeros((20, 20, 19), np.int16))
    with pytest.raises(ScanError, match="anatomy.npy: map shape"):
        CropDataset(list_cases(cache), cfg_for(cache))
