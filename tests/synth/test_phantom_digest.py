"""A phantom's manifest sha256 covers its files in the order preprocessing hashes them, so a
phantom with a lesion (and a brain mask) is not reported as "changed since `data scan`"."""

import logging

from medmae.io.manifest import read_manifest
from medmae.preprocess.case import prepare_case
from medmae.preprocess.config import PreprocessConfig
from medmae.preprocess.sources import source_digest
from medmae.synth.write import finish, generate


def test_a_lesion_phantoms_digest_is_the_one_preprocessing_checks(tmp_path, caplog):
    rows = list(generate(tmp_path, "brain", 1, seed=3, lesions=True, shape=(40, 40, 32), spacing=(4.0, 4.0, 4.0),
                         brain_mask=True))
    (case,) = [c.resolved(tmp_path) for c in read_manifest(finish(tmp_path, rows))]
    assert case.label and case.anatomy and case.mask  # every kind of file a phantom can have
    assert case.sha256 == source_digest(case)
    caplog.set_level(logging.WARNING, logger="medmae.preprocess.case")
    cfg = PreprocessConfig(spacing=(4.0, 4.0, 4.0), workers=0)
    cfg.priors.supervoxels = 0
    prepare_case(case, cfg, priors=False)
    assert not [r for r in caplog.records if "source changed" in r.getMessage()]
