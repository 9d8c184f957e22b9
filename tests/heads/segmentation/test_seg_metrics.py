"""Dice / HD95 per class on known volumes; empty references counted, never averaged as NaN."""

import math

import torch

from medmae.heads.segmentation.metrics import SegScores


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


def test_missed_structure_scores_zero_with_no_hd95():
    s = SegScores(["a"])
    s.add(torch.zeros(20, 20, 20, dtype=torch.long), _cube((5, 5, 5), (9, 9, 9)), (1, 1, 1))
    t = s.table()["a"]
    assert t["dice"] == 0.0 and t["missed"] == 1 and math.isnan(t["hd95"])
