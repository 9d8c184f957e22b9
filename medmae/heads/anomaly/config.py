"""Anomaly head config: scoring, intensity baseline, healthy calibration, evaluation, tracking."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from medmae.config.base import StrictModel
from medmae.tracking.config import TrackingConfig

MapKind = Literal["auto", "squared", "brighter", "darker", "absolute"]


class ScoreConfig(StrictModel):
    draws: int = Field(4, ge=2, le=64)
    """K mask draws per window (random masks); every valid token is hidden in at least one."""
    seed: int = 0
    """Seed of the mask draws (window i of a scan uses seed + i: reruns give identical maps)."""
    mask: Literal["random", "hemisphere", "anatomy"] = "random"
    """random: K complementary draws at the training ratio. hemisphere: hide the left, then the
    right half of the brain (mid-sagittal plane estimated per scan) and reconstruct it from the
    other. anatomy: hide each anatomy unit of the case's anatomy map in turn."""
    ratio: float | None = Field(None, gt=0, lt=1)
    """Hidden fraction of the valid tokens per draw; None = the model's training ratio."""
    min_body_fraction: float | None = Field(None, ge=0, le=1)
    """A token is scored when this fraction of it is body; None = the training's foreground_min_fraction."""
    roi: Literal["auto", "crop", "whole"] | tuple[int, int, int] = "auto"
    """Sliding-window size: the training crop, the whole (padded) scan, or explicit voxels
    (multiples of the patch size). auto = crop for random masks, whole for structured ones."""
    overlap: float = Field(0.25, ge=0, lt=1)
    """Window overlap of MONAI's sliding_window_inference (Gaussian blending)."""
    sw_batch_size: int = Field(2, ge=1)
    """Windows per forward pass (each times its K mask draws)."""
    map: MapKind = "auto"
    """The anomaly map. auto = by the MR sequence lesions are seen on (FLAIR/T2/PD/DWI: brighter;
    SWI: darker; T1, T1c, CT, unknown: squared; medmae.heads.anomaly.contrast); squared = mean squared error over the draws that hid the voxel;
    brighter = observed above expected (mean positive residual); darker = below expected;
    absolute = |mean residual|. Intensity units of the preprocessed scan (z-scores for MR)."""
    channel: int | None = Field(None, ge=0)
    """Channel whose error is the map; None = mean over channels."""
    combine: Literal["mean", "geometric", "min"] = "mean"
    """The combined map of the MAE map and the baseline, each first divided by its robust scale:
    mean (either map alone can raise it), geometric (sqrt of the product) or min (both must be
    high: bright normal structures that the MAE reconstructs well, the baseline's false
    positives, are suppressed; so is a lesion the MAE reconstructs)."""
    feature_bank: str | None = None
    """A manifest of reference scans (healthy scans, or the training scans; never the scans
    evaluated, or the map's figures are in-sample) whose encoder token features form a memory
    bank; when set, every case gets a fourth map, ``features`` (features.nii.gz, case score
    features_score): each token's distance to its nearest bank token, PatchCore-style,
    upsampled to voxels (medmae.heads.anomaly.features), calibrated and evaluated beside the
    reconstruction map, which stays the ``model`` map (and the one combined with the baseline).
    None: no feature map (the three maps model, baseline, combined)."""
    normalise: Literal["none", "edge"] = "none"
    """edge: the anomaly map divided, per band of distance to the mask edge (0-1.5-3-4.5-6-9-12 mm
    and beyond), by its robust scale in that band (times its scale in the whole body): errors
    relative to the error expected at that depth in the same case, against false alarms on the
    rim of a skull-stripped brain (maps.edge_normalised). Applied to the MAE map before combining
    (and to the feature map, when score.feature_bank is set)."""
    rim_mm: float = Field(0.0, ge=0)
    """Score inside the body mask eroded by this many mm: every map is 0 within ``rim_mm`` of
    the mask's edge (the body mask itself, and so the voxels evaluated, stay the same).
    Against false alarms on the rim of a skull-stripped brain (partial volume, mask cut)."""
    csf_classes: int = Field(0, ge=0, le=5)
    """Suppress CSF (MR brains): every map is 0 in the CSF-side class of a ``csf_classes``-class
    multi-Otsu of the baseline channel's intensities in the body, per case (the brightest class
    on T2 and PD, the darkest on FLAIR, T1, T1c and unknown sequences; falsealarm.csf_mask).
    0 = off; 3 or 4 (narrower). Against false alarms in sulcal and ventricular CSF on T2, where
    CSF is brighter than most lesions and thinner than a token; a lesion as bright as CSF is
    suppressed with it (docs/anomaly.md, "Real brains", says how much on the development set)."""
    median_filter: int = Field(0, ge=0)
    """Median filter width in voxels (0 = off; odd), applied inside the body mask."""
    case_statistic: Literal["abnormal_ml", "top_mean"] = "abnormal_ml"
    """The case score. abnormal_ml: the volume (ml) of body voxels whose map exceeds
    ``abnormal_level`` times the map's robust scale in that case (more abnormal tissue ranks
    higher); top_mean: the mean of the top ``top_percent`` % of the map's body voxels (the
    peak intensity of a region of fixed size: saturates once a lesion fills it)."""
    abnormal_level: float = Field(3.0, gt=0)
    """abnormal_ml counts voxels above this many robust scales (maps.robust_scale) of the map."""
    top_percent: float = Field(1.0, gt=0, le=100)
    """top_mean: mean of the top ``top_percent`` % of the map's voxels inside the body."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16 autocast on CUDA (ignored on CPU)."""
    max_spacing_ratio: float = Field(2.0, ge=1)
    """A scan whose source voxels are this many times coarser (any axis) than the coarsest
    training scan of its modality is refused."""
    check_sequence: bool = True
    """Refuse a scan whose MR sequence (manifest / name hint) the model was not trained on."""

    @field_validator("median_filter")
    @classmethod
    def _odd(cls, v):
        if v and v % 2 == 0:
            raise ValueError(f"median_filter must be odd (or 0), got {v}")
        return v

    @field_validator("csf_classes")
    @classmethod
    def _classes(cls, v):
        if v in (1, 2):
            raise ValueError(f"csf_classes must be 0 (off) or 3 to 5 classes, got {v}: with 2 the "
                             "CSF class would be half the brain")
        return v


BASE_MAPS = ("model", "baseline", "combined")
"""The maps of every run: the MAE's reconstruction map, the intensity baseline, their combination."""
FEATURE_MAP = "features"
"""The feature-space map, made when score.feature_bank is set (after "model" in map_names)."""


def map_names(score: ScoreConfig | dict | None) -> tuple[str, ...]:
    """The maps a run makes, in order: BASE_MAPS, with FEATURE_MAP after "model" when
    ``score.feature_bank`` is set. ``score``: the settings, or their JSON form (settings.json's
    config.score, a calibration's settings.score); None or no ``feature_bank`` key (files of an
    older medmae): no feature map. The single source of the map list of score, calibrate,
    evaluate and report."""
    bank = score.feature_bank if isinstance(score, ScoreConfig) else (score or {}).get("feature_bank")
    return (BASE_MAPS[0], FEATURE_MAP, *BASE_MAPS[1:]) if bank else BASE_MAPS


def run_map_names(settings: dict) -> tuple[str, ...]:
    """:func:`map_names` of a score run's settings.json (its ``config.score``)."""
    return map_names((settings.get("config") or {}).get("score"))


MAP_LABELS = {"model": "MAE map", FEATURE_MAP: "MAE feature map (nearest bank token)",
              "baseline": "intensity baseline (robust z)", "combined": "MAE + baseline"}
"""Each map's name in tables, the report and plots."""


def calibrated_maps_mismatch(thresholds: dict, names: tuple[str, ...]) -> str | None:
    """Why a calibration holding thresholds for the maps ``thresholds`` (keys) does not fit a
    run whose settings make ``names``; None when it fits (exactly those maps)."""
    held = sorted(thresholds)
    if held == sorted(names):
        return None
    return (f"has thresholds for the maps {', '.join(held)}, but these settings make {', '.join(names)} "
            f"(score.feature_bank {'set' if FEATURE_MAP in names else 'not set'}; a calibration of an older "
            "medmae, whose feature map replaced the model map?)")


class BaselineConfig(StrictModel):
    channel: int = Field(0, ge=0)
    """Channel of the intensity baseline (e.g. the FLAIR channel)."""
    sign: Literal["auto", "brighter", "darker", "absolute"] = "auto"
    """Robust z-score kept above 0 (brighter), below 0 (darker) or both; auto = the side of the
    baseline channel's sequence when score.map is auto, else as score.map (squared -> absolute)."""


class CalibrationConfig(StrictModel):
    fprs: list[float] = [0.01, 0.05]
    """Voxel false-positive rates on healthy scans to find thresholds for."""
    apply_fpr: float | None = None
    """FPR whose threshold makes the binary maps; None = the first of ``fprs``."""
    min_component_mm3: float = Field(50.0, ge=0)
    """Connected components of the binary map smaller than this are removed."""
    min_healthy: int = Field(10, ge=1)
    """Fewer healthy scans than this: a warning in the calibration's output, settings.json and the report."""
    sequence: str | None = None
    """MR sequence keyword(s) of the healthy scans (e.g. flair; per channel, comma-joined), for
    scans whose sequence is not known from their header or name. Without it, calibration
    refuses such a scan when the model's training sequence is known (`calibrate --sequence`)."""

    @field_validator("sequence")
    @classmethod
    def _keyword(cls, v):
        from medmae.io.hints import SEQUENCE_PATTERNS

        known = {k for k, _ in SEQUENCE_PATTERNS}
        if v is not None and any(p.strip().lower() not in known for p in v.split(",")):
            raise ValueError(f"sequence {v!r}: each channel's keyword must be one of {sorted(known)}")
        return None if v is None else ",".join(p.strip().lower() for p in v.split(","))

    @field_validator("fprs")
    @classmethod
    def _rates(cls, v):
        if not v or any(not 0 < f < 1 for f in v):
            raise ValueError(f"fprs must be rates in (0, 1), got {v}")
        return sorted(set(v))

    @model_validator(mode="after")
    def _known_rate(self):
        if self.apply_fpr is not None and self.apply_fpr not in self.fprs:
            raise ValueError(f"apply_fpr {self.apply_fpr} is not one of fprs {self.fprs}")
        return self

    @property
    def binary_fpr(self) -> float:
        return self.fprs[0] if self.apply_fpr is None else self.apply_fpr


class EvaluationConfig(StrictModel):
    bootstrap: int = Field(1000, ge=0)
    """Bootstrap resamples over cases for the 95% confidence intervals (0 = none)."""
    seed: int = 0
    size_bins_mm3: list[float] = [100.0, 1000.0]
    """Lesion volume edges (mm^3) of the size strata of lesion-wise detection."""
    bins: int = Field(1024, ge=16)
    """Score bins of the per-case histograms behind Dice curves and bootstrap intervals: this
    many quantiles of all scores plus this many of the lesion voxels' scores (every lesion
    score has its own bin while there are at most this many: the binned estimates are exact)."""
    max_bad_share: float = Field(0.2, ge=0, le=1)
    """Studies: an anomaly step fails when more than this share of its calibration scans, or
    of its evaluation scans, cannot be scored (0: any bad scan fails it)."""


class AnomalyTracking(TrackingConfig):
    """MLflow settings of ``anomaly evaluate`` (same store defaults as pretraining)."""

    experiment: str = "medmae-anomaly"
    system_metrics: bool = False
    log_model: bool = False
    log_checkpoint: bool = False


class AnomalyConfig(StrictModel):
    score: ScoreConfig = ScoreConfig()
    baseline: BaselineConfig = BaselineConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    tracking: AnomalyTracking = AnomalyTracking()
