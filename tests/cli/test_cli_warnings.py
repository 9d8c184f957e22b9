"""The CLI does not print MONAI's FutureWarnings about its own internals (they come on every
run and nothing a user does changes them); other warnings still show."""

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np

from medmae.cli.main import main
from medmae.heads.segmentation.metrics import dice_hd95

DATA = Path(__file__).resolve().parents[1] / "data"


def test_monai_future_warnings_are_filtered_where_they_come_from(tmp_path):
    assert main(["config", "reference", "--out", str(tmp_path / "config.md")]) == 0
    img = nib.load(DATA / "ct_abdomen_3mm_seg.nii.gz")
    ids = np.asarray(img.dataobj)
    liver = ids == 5
    shifted = np.roll(liver, 2, axis=0)
    with warnings.catch_warnings(record=True) as seen:
        warnings.filterwarnings("always", category=FutureWarning, append=True)  # after the CLI's filter
        dice, hd95 = dice_hd95(shifted, liver, [3.0, 3.0, 3.0])  # MONAI's HD95 warns about its own argument
        warnings.warn("not MONAI's", FutureWarning)
    assert 0.5 < dice < 1 and 0 < hd95 < 20
    assert [str(w.message) for w in seen if issubclass(w.category, FutureWarning)] == ["not MONAI's"]
