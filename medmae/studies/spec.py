"""The study file schema: what ``studies/NAME.yaml`` may say (unknown keys are errors).

A study names its data, the preprocessing and pretraining configs (a base config file
plus dotted overrides, exactly as on the command line), the pretraining variants to
compare, and the seeds. Every variant runs once per seed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pydantic import Field, model_validator

from medmae.config.base import ConfigError, StrictModel, load_config


class ManifestRef(StrictModel):
    path: str
    """A manifest CSV (from `medmae data scan`); relative paths are relative to the study file."""
    sha256: str | None = None
    """Expected sha256 of the manifest file: the study refuses to run on other data."""


class SynthData(StrictModel):
    brain: int = Field(0, ge=0)
    """Brain MR phantoms to generate (with tissue classes and, if ``lesions``, lesion masks)."""
    abdomen: int = Field(0, ge=0)
    """Abdominal CT phantoms to generate (with organ labels)."""
    lesions: bool = True
    brain_mask: bool = False
    """Brain phantoms: write each one's intracranial mask as its manifest ``mask``, so that
    preprocessing, training and anomaly scoring work inside the brain (skull-stripped, as
    brain anomaly data sets ship). Abdomen phantoms have none and ignore it."""
    val_fraction: float = Field(0.25, ge=0, lt=1)
    shape: tuple[int, int, int] | None = None
    """Phantom grid (voxels); None: the generator's default."""
    spacing: tuple[float, float, float] | None = None
    """Phantom voxel size in mm; None: the generator's default."""
    seed: int | None = None
    """Generator seed; None: the study's first seed. Give each data set of a study its own
    (pretraining, healthy calibration, evaluation), or they hold the same phantoms."""


class DataSpec(StrictModel):
    manifests: list[ManifestRef] = []
    folders: list[str] = []
    """Folders to scan as `medmae data scan` does (relative to the study file)."""
    val_fraction: float = Field(0.0, ge=0, lt=1)
    """Share of the scanned folders' cases put in split val (seeded by case id, as data scan)."""
    synth: SynthData = SynthData()

    @model_validator(mode="after")
    def _some_data(self) -> "DataSpec":
        if not (self.manifests or self.folders or self.synth.brain or self.synth.abdomen):
            raise ValueError("data: name at least one of manifests, folders, synth.brain, synth.abdomen")
        return self


class StageSpec(StrictModel):
    config: str | None = None
    """Base config file (relative to the study file); None: the embedded defaults."""
    overrides: list[str] = []
    """Dotted ``key=value`` overrides applied after the file, as on the command line."""


class Variant(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    overrides: list[str] = []
    """Pretraining overrides of this variant (after the study's own)."""


class PretrainSpec(StageSpec):
    variants: list[Variant] = Field(min_length=1)
    torchrun: int = Field(0, ge=0)
    """0: pretrain in this process; N >= 1: hand each pretraining step to
    ``torchrun --nproc-per-node N -m medmae pretrain``."""


class AnomalyStudySpec(StageSpec):
    """Anomaly evaluation of every pretrained variant: ``config``/``overrides`` make the
    AnomalyConfig (`medmae anomaly` keys); ``healthy`` are the calibration scans (healthy
    only), ``evaluate`` the scans with lesion masks in their label column. Healthy scans
    may be mixed into ``evaluate``: a case without a label (or with an empty mask) counts
    as healthy and gives the false-positive volume and the case-level AUROC, as do the
    scans of ``healthy_test``. A scan that is also a calibration scan (same image bytes) is
    in-sample and left out of the held-out figures. A step fails when more than
    ``evaluation.max_bad_share`` of its calibration or evaluation scans cannot be scored."""

    healthy: DataSpec
    evaluate: DataSpec
    healthy_test: DataSpec | None = None
    """Held-out healthy scans (never the calibration ones), scored and evaluated as healthy."""


class SegmentationStudySpec(StageSpec):
    """Segmentation fine-tuning of every pretrained variant against scratch: ``config`` /
    ``overrides`` make the FinetuneConfig (`medmae finetune` keys; the study sets
    ``data.cache_dir``, ``init.source`` and where it writes)."""

    data: DataSpec | None = None
    """Labelled scans to fine-tune and evaluate on, preprocessed as the study's data; None:
    the study's own cache (its label or anatomy maps, as ``data.label_map`` says)."""
    preprocess: list[str] = []
    """Preprocessing overrides for ``data`` after the study's own (e.g. a coarser spacing, so
    that a small crop sees whole organs); only with ``data``."""
    label_counts: list[int | None] = [None]
    """Labelled training cases per fine-tuning run (None = all of the training split)."""
    scratch: bool = True
    """Also fine-tune the same architecture from random weights (the baseline), same seeds."""
    split: str = "val"
    """Cache split the fine-tuned models are evaluated on (never trained on)."""
    corruptions: dict[str, list[float]] = {}
    """Corruption kind -> strengths evaluated besides the clean scans, e.g. {noise: [0.1]}."""


class StudySpec(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    out: str = "studies_out/{name}"
    """Where the steps write (relative to the working directory; ``{name}`` is replaced)."""
    tracking_uri: str | None = None
    """MLflow store of the study's runs; a relative ``sqlite:///`` path is relative to the study
    file's folder, so ``medmae study show <study file>`` finds the runs from any folder. None:
    ``--tracking-uri``, else $MLFLOW_TRACKING_URI, else ./mlruns/mlflow.db of the working directory."""
    seeds: list[int] = Field([0], min_length=1)
    data: DataSpec
    preprocess: StageSpec = StageSpec()
    pretrain: PretrainSpec
    anomaly: AnomalyStudySpec | None = None
    segmentation: SegmentationStudySpec | None = None

    @model_validator(mode="after")
    def _unique_variants(self) -> "StudySpec":
        names = [v.name for v in self.pretrain.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"pretrain.variants: names must be unique, got {names}")
        return self


def load_study(path: str | os.PathLike) -> tuple[StudySpec, Path]:
    """Read and validate a study file; ConfigError naming the file and key otherwise.

    Relative paths inside the study (configs, manifests, folders) are resolved against
    the study file's folder, and the stage configs are validated here too, so that a typo
    in an override fails before anything runs. Returns (spec, study folder).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such study file")
    spec = load_config(StudySpec, path)
    root = path.resolve().parent
    _check_stages(spec, root, path)
    return spec, root


def _check_stages(spec: StudySpec, root: Path, path: Path) -> None:
    from medmae.preprocess.config import PreprocessConfig
    from medmae.training.pretrain_config import PretrainConfig
    from medmae.heads.anomaly.config import AnomalyConfig
    from medmae.heads.segmentation.config import FinetuneConfig

    load_stage(PreprocessConfig, spec.preprocess, root, [], path)
    for v in spec.pretrain.variants:
        load_stage(PretrainConfig, spec.pretrain, root, v.overrides, path)
    if spec.anomaly is not None:
        load_stage(AnomalyConfig, spec.anomaly, root, [], path)
    if spec.segmentation is not None:
        load_stage(FinetuneConfig, spec.segmentation, root, [], path)
        load_stage(PreprocessConfig, spec.preprocess, root, spec.segmentation.preprocess, path)


def load_stage(schema, stage: StageSpec, root: Path, extra: list[str], study_file: Path):
    """A stage's resolved config: its base file, the study's overrides, then ``extra``."""
    base = resolve(root, stage.config) if stage.config else None
    try:
        return load_config(schema, base, [*stage.overrides, *extra])
    except ConfigError as e:
        raise ConfigError(f"{study_file}: {e}") from None


def resolve(root: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else root / p


def spec_hash(spec: StudySpec) -> str:
    """sha256 of the resolved study (recorded on the parent run)."""
    return hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
