"""``choose_label_cases``: the label-fraction choice depends on its seed (different seeds pick
different cases, each seed reproducibly), a larger N keeps the smaller N's cases, and N beyond
the split is refused. (On real cached phantoms: test_seg_finetune.test_frozen_encoder_and_label_fraction.)"""

import pytest

from medmae.heads.segmentation.data import choose_label_cases

CASES = [f"case_{i:02d}" for i in range(12)]


def test_the_seed_decides_which_cases_are_labelled():
    picks = {seed: tuple(choose_label_cases(CASES, 4, seed)) for seed in range(6)}
    assert len(set(picks.values())) >= 5  # 495 possible choices: seeds must not agree
    for seed, pick in picks.items():
        assert pick == tuple(choose_label_cases(CASES, 4, seed)) and len(set(pick)) == 4
        assert list(pick) == sorted(pick)  # kept in case order
    # over many seeds every case gets labelled sometimes (no fixed favourite)
    seen = {c for seed in range(40) for c in choose_label_cases(CASES, 2, seed)}
    assert seen == set(CASES)


def test_more_labels_keep_the_fewer_and_too_many_is_refused():
    for seed in (0, 3):
        small, large = choose_label_cases(CASES, 3, seed), choose_label_cases(CASES, 7, seed)
        assert set(small) <= set(large)
    assert choose_label_cases(CASES, None, 5) == CASES
    with pytest.raises(ValueError, match="only 12 labelled"):
        choose_label_cases(CASES, 13, 0)
