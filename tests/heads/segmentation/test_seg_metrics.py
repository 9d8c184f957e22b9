"""Dice / HD95 per class on known volumes; empty references counted, never averaged as NaN;
a missed structure scores the documented HD95 penalty (the volume's diagonal)."""

import math

import pytest
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance

from medmae.heads.segmentation.metrics import SegScores, hd95_penalty, one_hot


def _cube(lo, hi, value=1, shape=(20, 20, 20)):
    v = torch.zeros(shape, dtype=torch.long)
    v[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = value
    return v


def test_known_dice_hd95_and_empty_reference():
    s = SegScores(["a", "b"])
    ref = _cube((5, 5, 5), (15, 15, 15))
    s.add(ref.clone(), ref, (1, 1, 1), "same")
    shifted = _cube((7, 5, 5), (17, 15, 15))  # 8 of 10 slabs overlap
    row = s.add(shifted, ref, (2.0, 1.0, 1.0), "shifted")
    assert abs(row["a/dice"] - 0.8) < 1e-6
    assert abs(row["a/hd95"] - 4.0) < 1e-6  # 2 voxels along x at 2 mm
    # class b: reference empty in every case; a false positive in one
    s.add(_cube((0, 0, 0), (2, 2, 2), 2), torch.zeros(20, 20, 20, dtype=torch.long), (1, 1, 1), "fp")
    t = s.table()
    assert t["a"]["cases"] == 2 and abs(t["a"]["dice"] - 0.9) < 1e-6  # the fp case has no "a" reference
    assert t["a"]["empty_reference"] == 1
    assert t["b"]["cases"] == 0 and math.isnan(t["b"]["dice"])
    assert t["b"]["empty_reference"] == 3 and t["b"]["fp_on_empty"] == 1
    assert abs(t["mean"]["dice"] - 0.9) < 1e-6  # only classes with a reference
    assert "val/b/dice" not in s.flat() and s.flat()["val/b/fp_on_empty"] == 1.0


def test_missed_structure_scores_zero_dice_and_the_hd95_penalty():
    s = SegScores(["a"])
    row = s.add(torch.zeros(20, 20, 20, dtype=torch.long), _cube((5, 5, 5), (9, 9, 9)), (1, 1, 2))
    t = s.table()["a"]
    penalty = math.sqrt(20**2 + 20**2 + 40**2)  # the volume's diagonal in mm
    assert hd95_penalty((20, 20, 20), (1, 1, 2)) == pytest.approx(penalty)
    assert t["dice"] == 0.0 and t["missed"] == 1 and t["hd95"] == pytest.approx(penalty)
    assert row["a/missed"] == 1 and row["a/hd95"] == pytest.approx(penalty) and math.isnan(t["hd95_detected"])


def test_a_model_that_misses_more_never_looks_better():
    """Model A finds the structure in both cases, 3 voxels off; model B finds it exactly in one
    case and misses the other: B's mean HD95 must be the worse one (without the penalty B
    would report 0 mm over the one case it found)."""
    ref = _cube((5, 5, 5), (12, 12, 12))
    a, b = SegScores(["x"]), SegScores(["x"])
    for case in ("c1", "c2"):
        a.add(_cube((8, 5, 5), (15, 12, 12)), ref, (1, 1, 1), case)
    b.add(ref.clone(), ref, (1, 1, 1), "c1")
    b.add(torch.zeros_like(ref), ref, (1, 1, 1), "c2")
    ta, tb = a.table(), b.table()
    assert ta["x"]["hd95"] == pytest.approx(3.0) and ta["x"]["missed"] == 0
    assert tb["x"]["hd95"] > ta["x"]["hd95"] and tb["x"]["missed"] == 1 and tb["x"]["hd95_detected"] == 0.0
    assert tb["mean"]["hd95"] == tb["x"]["hd95"] and tb["mean"]["missed"] == 1 and tb["mean"]["cases"] == 2
    assert b.flat()["val/x/missed"] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_bounding_box_gives_monai_numbers_on_the_whole_volume(seed):
    """Each class is scored inside its box; MONAI on the whole volume gives the same Dice and
    HD95 (also for structures touching the volume's border, and anisotropic spacing)."""
    g = torch.Generator().manual_seed(seed)
    ref = (torch.rand(24, 20, 16, generator=g) > 0.5).long()
    ref = torch.nn.functional.max_pool3d(ref[None, None].float(), 5, 1, 2)[0, 0].long()  # blobs
    pred = torch.roll(ref, shifts=(2, -1, 1), dims=(0, 1, 2))
    ref[:4], pred[-3:] = 0, 1  # a border touched by the prediction only
    spacing = (0.8, 1.5, 3.0)
    s = SegScores(["fg"])
    row = s.add(pred, ref, spacing)
    p, r = one_hot(pred, 2), one_hot(ref, 2)
    dice = float(compute_dice(p, r, include_background=False)[0, 0])
    hd = float(compute_hausdorff_distance(p, r, percentile=95, spacing=list(spacing))[0, 0])
    assert row["fg/dice"] == pytest.approx(dice, abs=1e-6) and row["fg/hd95"] == pytest.approx(hd, abs=1e-5)
    assert 0 < dice < 1 and hd > 0
