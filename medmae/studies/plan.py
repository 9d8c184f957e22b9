"""A study file -> its steps in dependency order.

    data -> preprocess -> pretrain[variant, seed] -> export[variant, seed]
         anomaly data (healthy, evaluation) + pretrain[v, s] -> anomaly[v, s]
         preprocess + export[v, s] -> segmentation[v, s] (pretrained and scratch arms)

Every step's config is fully resolved here (the pretraining config as YAML-ready dict,
data digests computed), so the keys say exactly what a step would run.
"""

from __future__ import annotations

from pathlib import Path

from medmae.config.base import ConfigError
from medmae.io.manifest import sha256_of
from medmae.studies.digest import folder_digest, manifest_digest
from medmae.studies.spec import DataSpec, StudySpec, load_stage, resolve
from medmae.studies.store import Step


def data_step(spec: StudySpec, root: Path, study_file: Path, data: DataSpec | None = None,
              name: str = "cases", where: str = "data") -> Step:
    """The step that gathers ``data`` (default: the study's pretraining data) into one manifest."""
    data = spec.data if data is None else data
    manifests = []
    for ref in data.manifests:
        path = resolve(root, ref.path)
        if not path.is_file():
            raise ConfigError(f"{study_file}: {where}.manifests: {path}: no such manifest")
        if ref.sha256 and sha256_of([path]) != ref.sha256:
            raise ConfigError(f"{study_file}: {where}.manifests: {path}: sha256 differs from the study's "
                              f"{ref.sha256[:12]}...: the data changed; update the digest to accept it")
        manifests.append({"path": str(path), "digest": manifest_digest(path)})
    folders = []
    for f in data.folders:
        path = resolve(root, f)
        if not path.is_dir():
            raise ConfigError(f"{study_file}: {where}.folders: {path}: no such folder")
        folders.append({"path": str(path), "digest": folder_digest(path)})
    return Step("data", name, {"manifests": manifests, "folders": folders, "val_fraction": data.val_fraction,
                               "synth": data.synth.model_dump(mode="json"),
                               "seed": spec.seeds[0] if data.synth.seed is None else data.synth.seed})


def data_sets(spec: StudySpec) -> list[tuple[str, DataSpec]]:
    """(study key, data set) of every data set the study gathers."""
    out = [("data", spec.data)]
    if spec.anomaly is not None:
        out += [("anomaly.healthy", spec.anomaly.healthy), ("anomaly.evaluate", spec.anomaly.evaluate)]
        if spec.anomaly.healthy_test is not None:
            out.append(("anomaly.healthy_test", spec.anomaly.healthy_test))
    if spec.segmentation is not None and spec.segmentation.data is not None:
        out.append(("segmentation.data", spec.segmentation.data))
    return out


def check_phantom_subjects(spec: StudySpec, study_file: Path) -> None:
    """ConfigError when two data sets generate phantoms of one kind with one seed: they would
    hold the same subjects (the evaluated lesion phantoms would be the calibration or
    pretraining ones)."""
    used: dict[tuple[str, int], str] = {}
    sets = data_sets(spec)
    seeds = {spec.seeds[0] if d.synth.seed is None else d.synth.seed for _, d in sets}
    for where, data in sets:
        seed = spec.seeds[0] if data.synth.seed is None else data.synth.seed
        for kind in ("brain", "abdomen"):
            if not getattr(data.synth, kind):
                continue
            if (kind, seed) in used:
                free = next(s for s in range(100, 10**6, 100) if s not in seeds)
                raise ConfigError(
                    f"{study_file}: {used[kind, seed]} and {where} both generate {kind} phantoms with seed {seed}, "
                    f"so they hold the same subjects ({where}'s would be {used[kind, seed]}'s); give each data set "
                    f"its own seed, e.g. {where}: {{synth: {{..., seed: {free}}}}}")
            used[kind, seed] = where


def build_plan(spec: StudySpec, root: Path, study_file: Path) -> list[Step]:
    """All steps of the study, each after the steps it depends on."""
    from medmae.preprocess.config import PreprocessConfig
    from medmae.training.pretrain_config import PretrainConfig

    check_phantom_subjects(spec, study_file)
    steps = [data_step(spec, root, study_file)]
    variants: list[tuple[str, dict]] = []
    pre = load_stage(PreprocessConfig, spec.preprocess, root, [], study_file)
    steps.append(Step("preprocess", "cache", pre.model_dump(mode="json"), deps=["data-cases"]))
    for variant in spec.pretrain.variants:
        for seed in spec.seeds:
            cfg = load_stage(PretrainConfig, spec.pretrain, root, [*variant.overrides, f"train.seed={seed}"],
                             study_file)
            name = f"{variant.name}-s{seed}"
            labels = {"variant": variant.name, "seed": seed, "strategy": cfg.masking.strategy}
            body = cfg.model_dump(mode="json")
            for k in ("out_dir", "resume"):  # where it writes is the study's business
                body["train"].pop(k, None)
            body["data"].pop("cache_dir", None)
            body["tracking"] = {}  # tracking does not change what is trained: kept beside the key
            body["torchrun"] = spec.pretrain.torchrun
            steps.append(Step("pretrain", name, body, deps=["preprocess-cache", "data-cases"], labels=labels,
                              tracking=cfg.tracking.model_dump(mode="json")))
            steps.append(Step("export", name, {}, deps=[f"pretrain-{name}"], labels=labels))
            variants.append((name, labels))
    steps += head_steps(spec, root, study_file, variants)
    return steps


def head_steps(spec: StudySpec, root: Path, study_file: Path, variants: list[tuple[str, dict]]) -> list[Step]:
    """Anomaly and segmentation evaluation of every (variant, seed), after its pretraining."""
    from medmae.preprocess.config import PreprocessConfig
    from medmae.heads.anomaly.config import AnomalyConfig
    from medmae.heads.segmentation.config import FinetuneConfig

    steps: list[Step] = []
    if spec.anomaly is not None:
        steps.append(data_step(spec, root, study_file, spec.anomaly.healthy, "anomaly_healthy", "anomaly.healthy"))
        steps.append(data_step(spec, root, study_file, spec.anomaly.evaluate, "anomaly_eval", "anomaly.evaluate"))
        data_deps = ["data-anomaly_healthy", "data-anomaly_eval"]
        if spec.anomaly.healthy_test is not None:
            steps.append(data_step(spec, root, study_file, spec.anomaly.healthy_test, "anomaly_healthy_test",
                                   "anomaly.healthy_test"))
            data_deps.append("data-anomaly_healthy_test")
        anomaly = load_stage(AnomalyConfig, spec.anomaly, root, [], study_file)
        cfg = anomaly.model_dump(mode="json")
        cfg.pop("tracking", None)
        for name, labels in variants:
            steps.append(Step("anomaly", name, cfg, labels=labels, deps=[f"pretrain-{name}", *data_deps],
                              tracking=set_tracking(anomaly)))
    if spec.segmentation is not None:
        seg = spec.segmentation
        cache = "preprocess-cache"
        if seg.data is not None:
            steps.append(data_step(spec, root, study_file, seg.data, "segmentation", "segmentation.data"))
            # the study's preprocessing (plus the section's own overrides), on the labelled scans
            seg_pre = load_stage(PreprocessConfig, spec.preprocess, root, seg.preprocess, study_file)
            steps.append(Step("preprocess", "segmentation", seg_pre.model_dump(mode="json"),
                              deps=["data-segmentation"]))
            cache = "preprocess-segmentation"
        finetune = load_stage(FinetuneConfig, seg, root, [], study_file)
        ft = finetune.model_dump(mode="json")
        for k in ("out_dir", "resume"):
            ft["train"].pop(k, None)
        ft["data"].pop("cache_dir", None)
        ft["init"].pop("source", None)
        ft["tracking"] = {}
        body = {"finetune": ft, "label_counts": seg.label_counts, "scratch": seg.scratch, "split": seg.split,
                "corruptions": seg.corruptions}
        for name, labels in variants:
            steps.append(Step("segmentation", name, {**body, "seed": labels["seed"]}, labels=labels,
                              deps=[f"export-{name}", cache], tracking=set_tracking(finetune)))
    return steps


def set_tracking(cfg) -> dict:
    """The ``tracking.*`` keys a head's config file or the study's overrides set (a head's runs
    log no system metrics, model or checkpoint unless asked)."""
    return cfg.tracking.model_dump(mode="json", exclude_unset=True)
