"""Symmetric masking on real loader crops of real brains: does a token's mirror carry the
same tissue as the token?

Two brains are preprocessed into a temporary cache at 2 mm: nilearn's MNI152 template (with
an anatomy map of grey / white matter / other brain from its tissue templates) and the
patient T1c scan of tests/data (its own multi-Otsu tissue classes). Loader crops (48^3,
centred on random body voxels, random flips) are cut into 8^3-voxel tokens; a pair is a
valid token and its valid mirror. Three rules are compared: the mirror about each crop's
own midline from the case's meta (new), about the crop's centre (old), and about the
crop's centre for the same crops moved along x so that their centre is the midline.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medmae.preprocess.cache import list_cases
from medmae.data.config import LoaderConfig
from medmae.data.loader import build_loader
from medmae.data.crops import read_crop
from medmae.io.manifest import Case, write_manifest
from medmae.masking.anatomy import AnatomyMasking
from medmae.masking.context import build_context
from medmae.masking.select import hidden_counts
from medmae.masking.symmetry import mirror_index
from medmae.preprocess.batch import preprocess_manifest
from medmae.preprocess.config import PreprocessConfig

DATA = Path(__file__).resolve().parents[1] / "data"
K, P = 48, 8
MAPS = ("body", "anatomy", "tissue")


@pytest.fixture(scope="module")
def brains(tmp_path_factory):
    """A 2 mm cache of MNI152 ("mni") and brain1_t1c ("brain1")."""
    from nilearn.datasets import (load_mni152_brain_mask, load_mni152_gm_template, load_mni152_template,
                                  load_mni152_wm_template)
    root = tmp_path_factory.mktemp("brains")
    t1 = load_mni152_template(resolution=2)
    gm, wm = (np.asarray(f(resolution=2).get_fdata()) for f in (load_mni152_gm_template, load_mni152_wm_template))
    brain = np.asarray(load_mni152_brain_mask(resolution=2).get_fdata()) > 0
    tissue = np.where(brain, 1, 0)
    tissue = np.where(brain & (gm > 0.5) & (gm >= wm), 2, tissue)
    tissue = np.where(brain & (wm > 0.5) & (wm > gm), 3, tissue)
    nib.save(nib.Nifti1Image(np.asarray(t1.get_fdata(), np.float32), t1.affine), str(root / "mni.nii.gz"))
    nib.save(nib.Nifti1Image(tissue.astype(np.int16), t1.affine), str(root / "mni_tissue.nii.gz"))
    cases = [Case(case_id="mni", image=[str(root / "mni.nii.gz")], modality="MR",
                  anatomy=str(root / "mni_tissue.nii.gz")),
             Case(case_id="brain1", image=[str(DATA / "brain1_t1c.nrrd")], modality="MR", sequence="T1c")]
    write_manifest(cases, root / "manifest.csv")
    cfg = PreprocessConfig(spacing=(2.0, 2.0, 2.0), workers=0)
    cfg.priors.supervoxels = 0
    report = preprocess_manifest(root / "manifest.csv", root / "cache", cfg, progress=False)
    assert not report.bad, report.bad
    return root / "cache"


def agreement(labels: torch.Tensor, valid: torch.Tensor, mirror: torch.Tensor) -> tuple[int, int]:
    """(pairs whose tokens share a label, pairs): valid labelled tokens with a valid mirror."""
    m = mirror.clamp(min=0)
    pair = valid & (mirror >= 0) & valid.gather(1, m) & (labels > 0)
    return int(((labels == labels.gather(1, m)) & pair).sum()), int(pair.sum())


def centred_batch(case, starts: torch.Tensor) -> dict:
    """The crops at ``starts`` moved along x so that the crop's centre is the case's midline."""
    plane = case.meta["midline"]["index"]
    out = {n: [] for n in ("image", *MAPS)}
    for s in starts.tolist():
        s[0] = int(round(plane - (K - 1) / 2))
        out["image"].append(read_crop(case.image, s, (K,) * 3, 0.0))
        for n in MAPS:
            arr = case.map(n)
            out[n].append(np.zeros((1, K, K, K), np.int16) if arr is None else read_crop(arr, s, (K,) * 3, 0)[None])
    return {n: torch.from_numpy(np.stack(v)) for n, v in out.items()}


def shares(cache: Path, case_id: str, source: str, batches: int = 8) -> dict[str, float]:
    cfg = LoaderConfig(cache_dir=str(cache), split=None, crop_size=(K,) * 3, crops_per_volume=4, batch_size=4,
                       workers=0, priors=["anatomy", "tissue"], augment={"flip_prob": 0.5, "intensity_prob": 0.0})
    cases = {c.case_id: c for c in list_cases(cache)}
    loader = build_loader(cfg, seed=0)
    counts = {"new": [0, 0], "old": [0, 0], "centred": [0, 0]}

    def add(rule, got):
        counts[rule][0] += got[0]
        counts[rule][1] += got[1]

    seen = 0
    while seen < batches:
        batch = next(loader)
        if batch["case_id"][0] != case_id:
            continue
        seen += 1
        ctx = build_context(batch, (P,) * 3, True, 0.5, "cpu")
        labels = ctx.maps[source]
        add("new", agreement(labels, ctx.valid, ctx.mirror))
        add("old", agreement(labels, ctx.valid, mirror_index(ctx.grid).expand_as(labels)))
        cen = build_context(centred_batch(cases[case_id], batch["crop_start"]), (P,) * 3, True, 0.5, "cpu")
        add("centred", agreement(cen.maps[source], cen.valid, mirror_index(cen.grid).expand_as(labels)))
    assert min(n for _, n in counts.values()) > 500  # enough pairs for a stable share
    return {rule: same / n for rule, (same, n) in counts.items()}


@pytest.mark.parametrize("case_id, source", [("mni", "anatomy"), ("mni", "tissue"), ("brain1", "tissue")])
def test_mirror_about_the_midline_pairs_like_tissue(brains, case_id, source):
    s = shares(brains, case_id, source)
    print(f"\n{case_id} {source}: same-label share of mirror pairs: per-crop midline {s['new']:.3f}, "
          f"crop centre {s['old']:.3f}, crop centred on the midline {s['centred']:.3f}")
    assert s["new"] > s["old"] + 0.15
    assert s["new"] > s["centred"] - 0.08


def test_mirror_mode_on_real_crops_keeps_mirrors_visible(brains):
    """At ratio 0.3 "mirror" hides almost no token together with its true mirror; mirroring
    about the crop's centre hides many such pairs."""
    cfg = LoaderConfig(cache_dir=str(brains), split=None, crop_size=(K,) * 3, crops_per_volume=4, batch_size=8,
                       workers=0, priors=["tissue"], augment={"flip_prob": 0.5, "intensity_prob": 0.0})
    loader = build_loader(cfg, seed=1)
    strategy = AnatomyMasking(0.3, "tissue", symmetric="mirror")
    together = {"new": 0, "old": 0}
    pairs = 0
    for _ in range(4):
        ctx = build_context(next(loader), (P,) * 3, True, 0.1, "cpu")
        m = ctx.mirror
        paired = (m >= 0) & ctx.valid & ctx.valid.gather(1, m.clamp(min=0))
        pairs += int(paired.sum())
        for rule in ("new", "old"):
            ctx.mirror = m if rule == "new" else None  # None: mirror about the crop's centre
            mask = strategy(ctx, 0, torch.Generator().manual_seed(0))
            assert mask.sum(1).eq(hidden_counts(ctx.valid, 0.3)).all()  # the budget is exact
            together[rule] += int((mask & mask.gather(1, m.clamp(min=0)) & paired).sum())
    print(f"\nmirror mode at 0.3: share of true mirror pairs hidden together: per-crop midline "
          f"{together['new'] / pairs:.3f}, crop centre {together['old'] / pairs:.3f}")
    assert together["new"] < 0.02 * pairs and together["old"] > 0.05 * pairs
