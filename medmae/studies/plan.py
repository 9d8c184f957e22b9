"""A study file -> its steps in dependency order.

    data -> preprocess -> pretrain[variant, seed] -> export[variant, seed]

Every step's config is fully resolved here (the pretraining config as YAML-ready dict,
data digests computed), so the keys say exactly what a step would run.
"""

from __future__ import annotations

from pathlib import Path

from medmae.config.base import ConfigError
from medmae.io.manifest import sha256_of
from medmae.studies.digest import folder_digest, manifest_digest
from medmae.studies.spec import StudySpec, load_stage, resolve
from medmae.studies.store import Step


def data_step(spec: StudySpec, root: Path, study_file: Path) -> Step:
    manifests = []
    for ref in spec.data.manifests:
        path = resolve(root, ref.path)
        if not path.is_file():
            raise ConfigError(f"{study_file}: data.manifests: {path}: no such manifest")
        if ref.sha256 and sha256_of([path]) != ref.sha256:
            raise ConfigError(f"{study_file}: data.manifests: {path}: sha256 differs from the study's "
                              f"{ref.sha256[:12]}...: the data changed; update the digest to accept it")
        manifests.append({"path": str(path), "digest": manifest_digest(path)})
    folders = []
    for f in spec.data.folders:
        path = resolve(root, f)
        if not path.is_dir():
            raise ConfigError(f"{study_file}: data.folders: {path}: no such folder")
        folders.append({"path": str(path), "digest": folder_digest(path)})
    return Step("data", "cases", {"manifests": manifests, "folders": folders,
                                  "synth": spec.data.synth.model_dump(mode="json"), "seed": spec.seeds[0]})


def build_plan(spec: StudySpec, root: Path, study_file: Path) -> list[Step]:
    """All steps of the study, each after the steps it depends on."""
    from medmae.config.schema import PretrainConfig, PreprocessConfig

    steps = [data_step(spec, root, study_file)]
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
            body["tracking"] = {}  # tracking does not change what is trained
            body["torchrun"] = spec.pretrain.torchrun
            steps.append(Step("pretrain", name, body, deps=["preprocess-cache"], labels=labels))
            steps.append(Step("export", name, {}, deps=[f"pretrain-{name}"], labels=labels))
    return steps
