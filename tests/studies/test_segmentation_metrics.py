"""The segmentation step's metrics carry the per-class spread of the gain over scratch."""

import statistics

import pytest

from medmae.studies.kinds import segmentation_metrics


def _row(arm, n, cls, dice, corruption="clean", strength=0.0):
    return {"arm": arm, "label_cases": n, "seed": 0, "corruption": corruption, "strength": strength,
            "class": cls, "dice": dice}


def test_gain_spread_over_classes_at_most_labels_on_clean_scans():
    pre = {"liver": 0.5, "spleen": 0.2, "kidney": 0.3}
    scr = {"liver": 0.4, "spleen": 0.3, "kidney": 0.3}
    rows = [_row("pretrained", 2, c, d) for c, d in pre.items()] + [_row("scratch", 2, c, d) for c, d in scr.items()]
    rows += [_row("pretrained", 2, "mean", 1 / 3), _row("scratch", 2, "mean", 1 / 3),  # not a class
             _row("pretrained", 1, "liver", 0.9), _row("scratch", 1, "liver", 0.0),  # fewer labels
             _row("pretrained", 2, "liver", 0.0, "noise", 0.1), _row("scratch", 2, "liver", 0.9, "noise", 0.1),
             _row("pretrained", 2, "absent", float("nan")), _row("scratch", 2, "absent", 0.1)]
    m = segmentation_metrics(rows)
    assert m["dice_gain_classes"] == 3
    assert m["dice_gain_class_sd"] == pytest.approx(statistics.stdev([0.1, -0.1, 0.0]))
    one = [r for r in rows if r["class"] in ("liver", "mean")]
    assert "dice_gain_class_sd" not in segmentation_metrics(one)  # one class: no spread
