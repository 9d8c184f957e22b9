"""The study summary a person reads: a compact headline table, no '± 0' for one seed, honest plot axes."""

from __future__ import annotations

import math

import pytest

from medmae.studies.summary import aggregate, axis_range, notes, terminal_table, to_markdown, write_summary

DEMO_ROW = {  # the demo's columns (docs/quickstart.md), 30 of them
    "pretrain.final_loss": 0.21, "pretrain.mean_predictor_loss": 0.54, "pretrain.loss_over_mean_predictor": 0.39,
    "pretrain.hidden_corr": 0.78, "pretrain.hidden_corr_real_seen": 0.79, "pretrain.interp_hidden_corr_real_seen": 0.46,
    "pretrain.hidden_edge_r_real_seen": 0.58, "pretrain.interp_edge_r_real_seen": 0.12,
    **{f"anomaly.{m}_{k}": 0.5 for m in ("model", "baseline", "combined")
       for k in ("voxel_auroc", "auprc_per_volume", "dice_at_fpr", "oracle_dice", "f1")},
    "anomaly.model_voxel_auprc": 0.031, "anomaly.baseline_voxel_auprc": 0.008, "anomaly.combined_voxel_auprc": 0.02,
    "segmentation.dice_pretrained_n2": 0.26, "segmentation.dice_scratch_n2": 0.31, "segmentation.dice": 0.26,
    "segmentation.dice_gain": -0.05,
}


def _rows(seeds=(0,)):
    rows = []
    for variant, shift in (("random", 0.0), ("anatomy", 0.0004)):
        for s in seeds:
            rows.append({"variant": variant, "strategy": variant, "seed": s,
                         **{k: v + shift + 0.01 * s for k, v in DEMO_ROW.items()}})
    return rows


def test_terminal_table_is_the_headline_and_fits_80_columns():
    rows = _rows()
    text = terminal_table("demo", rows)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    assert lines[5] == ""  # title, header, rule, one line per variant; then the notes
    assert all(n.startswith(("random:", "anatomy:", "  ")) for n in lines[6:]) and len(lines) > 6
    assert lines[1].split()[:2] == ["variant", "seeds"] and "AUPRC" in lines[1] and "Dice" in lines[1]
    random = next(line for line in lines if line.startswith("random"))
    assert "0.79 (0.46)" in random and "0.031 (0.008)" in random and "0.26 / 0.31" in random
    assert "r real seen" in lines[1] and "held out" not in lines[1]  # no held-out real scan in this study


def test_real_scans_seen_in_pretraining_and_held_out_are_separate_columns():
    rows = [{**r, "pretrain.hidden_corr_real_heldout": 0.41, "pretrain.interp_hidden_corr_real_heldout": 0.44}
            for r in _rows()]
    lines = terminal_table("demo", rows).splitlines()
    assert max(len(line) for line in lines) <= 80, lines
    assert "r real seen" in lines[1] and "r held out" in lines[1]
    random = next(line for line in lines if line.startswith("random"))
    assert "0.79 (0.46)" in random and "0.41 (0.44)" in random


def test_one_seed_spread_is_undefined_not_zero():
    md = to_markdown("demo", _rows())
    assert "± 0" not in md and "± n/a" in md
    assert all(math.isnan(a["pretrain.final_loss"][1]) for a in aggregate(_rows()))
    two = to_markdown("demo", _rows(seeds=(0, 1)))
    assert "± n/a" not in two and "| pretrain.final_loss | 0.215 ± 0.0071 |" in two  # 0.21 and 0.22
    assert max(len(line) for line in md.splitlines()[:8]) < 160  # the headline stays narrow


def test_axes_are_honest():
    # a difference in the fourth decimal of a bounded score is drawn on its whole range
    lo, hi = axis_range("anomaly.model_voxel_auroc", [0.8123, 0.8127])
    assert (lo, hi) == (0.0, 1.05) and (0.8127 - 0.8123) / (hi - lo) < 1e-3
    lo, hi = axis_range("segmentation.dice_gain", [-0.05, 0.01])  # gains: centred on the zero line
    assert lo == -hi and -0.1 < lo < -0.05  # ...and scaled to the largest gain, not to Dice's 0..1
    lo, hi = axis_range("pretrain.final_loss", [0.2101, 0.2102])  # unbounded: from zero
    assert lo == 0.0 and hi > 0.21
    assert axis_range("pretrain.hidden_corr_real_seen", [-0.2, 0.4])[0] == -1.05


def test_files(tmp_path):
    paths = write_summary("demo", _rows(), tmp_path)
    assert [p.name for p in paths] == ["summary.csv", "summary.md", "summary.txt", "summary.png"]
    assert (tmp_path / "summary.png").stat().st_size > 5000
    assert (tmp_path / "summary.txt").read_text(encoding="utf-8") == terminal_table("demo", _rows())
    assert "segmentation.dice_gain" in (tmp_path / "summary.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("missing", ["anomaly", "segmentation"])
def test_headline_leaves_out_steps_a_study_did_not_run(missing):
    rows = [{k: v for k, v in r.items() if not k.startswith(missing)} for r in _rows()]
    header = terminal_table("x", rows).splitlines()[1]
    assert ("AUPRC" in header) == (missing != "anomaly") and ("Dice" in header) == (missing != "segmentation")


def test_a_one_seed_gain_within_the_class_spread_is_called_noise():
    # the demo's numbers: Dice 0.26 pretrained against 0.31 from scratch, per-class gains spread by 0.06
    rows = [{**r, "segmentation.dice_gain_class_sd": 0.06, "segmentation.dice_gain_classes": 4.0} for r in _rows()]
    (random, anatomy) = [n for n in notes(rows) if "Dice gain" in n]
    assert random.startswith("random: Dice gain over scratch -0.050, standard error 0.03 (sd 0.06 of its 4")
    assert "within noise: this study cannot tell pretrained from scratch" in random
    text = terminal_table("demo", rows)
    assert "within noise" in text and max(len(line) for line in text.splitlines()) <= 80
    assert "- random: Dice gain over scratch -0.050" in to_markdown("demo", rows)
    big = [{**r, "segmentation.dice_gain": 0.2} for r in rows]  # 0.2 > 2 x 0.03
    assert all("beyond 2 standard errors" in n for n in notes(big) if "Dice gain" in n)


def test_with_several_seeds_the_seed_spread_judges_the_gain():
    rows = _rows(seeds=(0, 1, 2))  # gains -0.05, -0.04, -0.03: sd 0.01, standard error 0.0058
    (random, _) = [n for n in notes(rows) if "Dice gain" in n]
    assert "standard error 0.0058 (sd 0.01 over 3 seeds)" in random and "beyond 2 standard errors" in random


def test_the_share_masked_at_random_is_stated():
    rows = [{**r, "pretrain.masked_at_random_share": 0.5 if r["variant"] == "anatomy" else 0.0} for r in _rows()]
    (note,) = [n for n in notes(rows) if "masked at random" in n]
    assert note.startswith("anatomy: 50% of its training cases have no map for anatomy masking")
