"""build_loader: batches, workers, ranks, reproducibility, resume; the device-resident loader."""

import pytest
import torch
from loader_helpers import loader_cfg
from torch.utils.data import DataLoader, DistributedSampler

from medmae.preprocess.cache import list_cases
from medmae.data.dataset import CropDataset, collate_crops
from medmae.data.loader import CropLoader, build_loader
from medmae.data.resident import ResidentLoader
from medmae.data.case_order import epoch_order

K = (16, 16, 16)


def take(loader, n):
    return [next(loader) for _ in range(n)]


def same(a, b):
    """Equal batches (NaN midlines, cases without a plane, compare equal)."""
    return a["case_id"] == b["case_id"] and set(a) == set(b) and all(
        torch.equal(a[k], b[k]) if not a[k].is_floating_point() else bool(torch.isclose(
            a[k], b[k], rtol=0, atol=0, equal_nan=True).all()) for k in a if k != "case_id")


def test_batches_group_crops_of_several_volumes(coded_cache):
    loader = build_loader(loader_cfg(coded_cache), seed=0)
    assert isinstance(loader, CropLoader) and isinstance(loader, DataLoader)
    batch = next(loader)
    assert batch["image"].shape == (4, 1, *K) and batch["image"].dtype == torch.float32
    assert batch["body"].shape == (4, 1, *K) and batch["body"].dtype == torch.uint8
    assert batch["anatomy"].dtype == torch.int16
    assert int(batch["tissue"].abs().sum()) == 0  # no case has a tissue map: zeros, same shape
    ids = batch["case_id"]
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]


def test_epoch_iteration_covers_every_case(coded_cache):
    loader = build_loader(loader_cfg(coded_cache), seed=0)
    for epoch in range(2):
        loader.set_epoch(epoch)
        seen = [cid for b in loader for cid in b["case_id"][::2]]
        assert sorted(seen) == [f"case_{i:03d}" for i in range(6)]


def test_two_workers_give_the_same_batches_as_the_main_process(coded_cache):
    main = take(build_loader(loader_cfg(coded_cache, workers=0), seed=4), 5)
    workers = take(build_loader(loader_cfg(coded_cache, workers=2), seed=4), 5)
    assert all(same(a, b) for a, b in zip(main, workers))


def test_seed_reproducibility(coded_cache):
    a = take(build_loader(loader_cfg(coded_cache), seed=11), 4)
    b = take(build_loader(loader_cfg(coded_cache), seed=11), 4)
    c = take(build_loader(loader_cfg(coded_cache), seed=12), 4)
    assert all(same(x, y) for x, y in zip(a, b))
    assert not all(same(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_from_state_dict_continues_identically(coded_cache, workers):
    cfg = loader_cfg(coded_cache, workers=workers)
    full = build_loader(cfg, seed=7)
    ref = take(full, 8)  # 3 batches per epoch: crosses two epoch boundaries
    first = build_loader(cfg, seed=7)
    take(first, 4)
    state = first.state_dict()
    assert state == {"epoch": 1, "batch": 1}
    resumed = build_loader(cfg, seed=7)
    resumed.load_state_dict(state)
    assert all(same(x, y) for x, y in zip(ref[4:], take(resumed, 4)))
    first.load_state_dict({"epoch": 0, "batch": 2})  # rewinding a live loader works too
    assert same(next(first), ref[2])


def test_distributed_sampler_gives_ranks_disjoint_cases(coded_cache):
    cfg = loader_cfg(coded_cache)
    ds = CropDataset(list_cases(coded_cache), cfg, seed=0)
    per_rank = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(3)
        loader = DataLoader(ds, sampler=sampler, batch_size=1, collate_fn=collate_crops)
        per_rank.append({cid for b in loader for cid in b["case_id"]})
    assert per_rank[0].isdisjoint(per_rank[1]) and len(per_rank[0] | per_rank[1]) == 6


def test_build_loader_ranks_are_disjoint_every_epoch(coded_cache):
    cfg = loader_cfg(coded_cache)
    loaders = [build_loader(cfg, seed=1, rank=r, world_size=2) for r in range(2)]
    for epoch in range(3):
        sets = []
        for ld in loaders:
            ld.set_epoch(epoch)
            sets.append({cid for b in ld for cid in b["case_id"]})
        assert sets[0].isdisjoint(sets[1])
    with pytest.raises(ValueError, match="ranks"):
        epoch_order(3, 0, seed=0, world_size=4)


def test_epoch_order_pads_to_whole_batches():
    order = epoch_order(5, 0, seed=0, multiple=4)
    assert len(order) == 8 and sorted(set(order)) == [0, 1, 2, 3, 4]
    assert len(epoch_order(1, 0, seed=0, multiple=3)) == 3


# ---- device-resident loader (on the CPU here) -------------------------------------------------

def test_resident_loader_matches_the_cpu_loader_without_augmentation(coded_cache):
    kw = dict(augment={"flip_prob": 0.0, "intensity_prob": 0.0}, crop_size=(24, 24, 24))
    cpu = take(build_loader(loader_cfg(coded_cache, **kw), seed=2), 6)
    resident = build_loader(loader_cfg(coded_cache, device_resident=True, **kw), seed=2, device="cpu")
    assert isinstance(resident, ResidentLoader)
    res = take(resident, 6)  # covers the padded small case too
    for a, b in zip(cpu, res):
        assert set(a) == set(b)
        assert all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape for k in a if k != "case_id")
        assert same(a, b)


def test_resident_loader_keeps_maps_aligned_under_flips_and_turns(coded_cache):
    cfg = loader_cfg(coded_cache, device_resident=True, priors=["anatomy", "supervoxels"],
                  augment={"flip_prob": 0.5, "rotate90_prob": 0.75, "intensity_prob": 0.0})
    loader = build_loader(cfg, seed=3, device="cpu")
    changed = 0
    for b in take(loader, 6):
        code = b["image"][:, 0].round().long()
        inside = b["supervoxels"][:, 0] > 0
        assert torch.equal(code[inside], b["supervoxels"][:, 0][inside].long())
        for j, cid in enumerate(b["case_id"]):
            anatomy = b["anatomy"][j, 0].long()
            expected = torch.zeros_like(anatomy) if cid == "case_002" else code[j] % 30000
            assert torch.equal(anatomy[inside[j]], expected[inside[j]])
        changed += int(((code[:, 0, 0, 1] - code[:, 0, 0, 0]) != 1).sum())
    assert changed > 0  # some crops were flipped or turned


def test_resident_loader_intensity_and_resume(coded_cache):
    cfg = loader_cfg(coded_cache, device_resident=True, priors=["supervoxels"], crop_size=(24, 24, 24),
                  augment={"flip_prob": 0.0, "intensity_prob": 1.0, "intensity_scale": 0.2, "intensity_shift": 0.5})
    ref = take(build_loader(cfg, seed=5, device="cpu"), 5)
    for b in ref:
        for img, code in zip(b["image"][:, 0], b["supervoxels"][:, 0]):
            inside = code > 0
            x, y = code[inside].double(), img[inside].double()
            a = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
            assert 0.8 <= float(a) <= 1.2 and abs(float(a) - 1.0) > 1e-6
            assert torch.allclose(y, a * x + (y.mean() - a * x.mean()), atol=0.05)
    loader = build_loader(cfg, seed=5, device="cpu")
    loader.load_state_dict({"epoch": 1, "batch": 0})
    assert same(next(loader), ref[3])
    assert loader.state_dict() == {"epoch": 1, "batch": 1}
