"""dataset.json label tables: ids are the file's own (gaps and any key order kept), in the
MSD form ({"1": "liver"}) and nnU-Net v2's ({"liver": 1}, region lists left out)."""

import json

from medmae.io.dataset_json import read_task


def test_label_ids_are_the_files_own_with_gaps_and_any_order(tmp_path):
    msd = {"modality": {"0": "CT"}, "labels": {"3": "tumour", "0": "background", "1": "liver"}}
    (tmp_path / "dataset.json").write_text(json.dumps(msd), encoding="utf-8")
    task = read_task(tmp_path)
    assert task.labels == {0: "background", 1: "liver", 3: "tumour"} and task.declared == "CT"

    v2 = {"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "liver": 1, "tumour": 3,
                                                               "whole": [1, 3]}}
    (tmp_path / "dataset.json").write_text(json.dumps(v2), encoding="utf-8")
    task = read_task(tmp_path)
    assert task.labels == {0: "background", 1: "liver", 3: "tumour"}
    assert task.channels == {0: "T2", 1: "ADC"} and task.declared == "MR"
