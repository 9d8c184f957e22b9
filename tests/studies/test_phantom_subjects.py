"""A study refuses two data sets that would generate the same phantom subjects."""

from __future__ import annotations

from pathlib import Path

import pytest

from medmae.config.base import ConfigError
from medmae.studies.plan import check_phantom_subjects
from medmae.studies.spec import load_study

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _study(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text((HERE / "tiny_study.yaml").read_text().replace(
        "  evaluate: {synth: {brain: 2, lesions: true, shape: [48, 48, 40], spacing: [3.0, 3.0, 3.0], "
        "val_fraction: 0.0, seed: 200}}", text))
    return path


def test_lesion_phantoms_with_the_pretraining_seed_are_refused(tmp_path):
    # no seed: the study's first seed (0), the pretraining data's own: the same brains
    study = _study(tmp_path, "  evaluate: {synth: {brain: 2, lesions: true, val_fraction: 0.0}}")
    spec, _ = load_study(study)
    with pytest.raises(ConfigError) as e:
        check_phantom_subjects(spec, study)
    msg = str(e.value)
    assert str(study) in msg and "data and anomaly.evaluate both generate brain phantoms with seed 0" in msg
    assert "anomaly.evaluate: {synth: {..., seed: 200}}" in msg  # a seed no data set uses (0, 100, 300 are)


def test_the_same_seed_for_another_kind_is_allowed(tmp_path):
    study = _study(tmp_path, "  evaluate: {synth: {abdomen: 2, lesions: false, val_fraction: 0.0, seed: 100}}")
    spec, _ = load_study(study)
    check_phantom_subjects(spec, study)  # brain seed 100 (healthy) beside abdomen seed 100


@pytest.mark.parametrize("name", ["demo.yaml", "brain_mri_anomaly.yaml", "abdomen_ct_segmentation.yaml"])
def test_shipped_studies_keep_their_subjects_apart(name):
    study = REPO / "studies" / name
    spec, _ = load_study(study)
    check_phantom_subjects(spec, study)
