"""Write phantoms as NIfTI files with a manifest, the way `medmae data scan` would list them.

    OUT/
      manifest.csv               case_id, image, modality, sequence, label, anatomy, split, sha256
      labels.json                anatomy id -> name, per kind
      images/<case_id>.nii.gz    int16 image
      anatomy/<case_id>.nii.gz   int16 tissue / organ ids
      labels/<case_id>.nii.gz    uint8 lesion mask (with lesions only)
      masks/<case_id>.nii.gz     uint8 brain mask, the manifest's ``mask`` (brain_mask only)
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import nibabel as nib
import numpy as np

from medmae.atomic import atomic_write, atomic_write_text
from medmae.io.manifest import Case, sha256_of, write_manifest
from medmae.synth.phantom import Phantom, make_phantom


def save_nifti(array: np.ndarray, affine: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``array`` (X, Y, Z) with ``affine`` as .nii.gz, atomically (sform and qform set)."""
    img = nib.Nifti1Image(array, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm")
    data = gzip.compress(img.to_bytes(), compresslevel=1)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def case_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of case ``index``: independent of every other case and of how many are made."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def write_case(out: Path, case_id: str, ph: Phantom, split: str, brain_mask: bool = False) -> Case:
    """Write one phantom's files under ``out`` and return its manifest row (relative paths).

    ``brain_mask`` also writes the phantom's brain mask as the row's ``mask``: preprocessing
    then works inside the brain, as with skull-stripped scans (see ``Phantom.mask``)."""
    image = Path("images") / f"{case_id}.nii.gz"
    anatomy = Path("anatomy") / f"{case_id}.nii.gz"
    save_nifti(ph.image, ph.affine, out / image)
    save_nifti(ph.anatomy, ph.affine, out / anatomy)
    label = ""
    if ph.lesion is not None:
        label = str(Path("labels") / f"{case_id}.nii.gz")
        save_nifti(ph.lesion, ph.affine, out / label)
    mask = ""
    if brain_mask:
        mask = str(Path("masks") / f"{case_id}.nii.gz")
        save_nifti(ph.mask, ph.affine, out / mask)
    case = Case(case_id=case_id, image=[str(image)], modality=ph.modality, sequence=ph.sequence,
                label=label, anatomy=str(anatomy), mask=mask, split=split)
    case.sha256 = sha256_of([out / p for p in case.source_paths()])  # the files and order preprocessing hashes
    return case


def generate(out: str | os.PathLike, kind: str, n: int, seed: int = 0, lesions: bool = False,
             shape: Sequence[int] | None = None, spacing: Sequence[float] | None = None,
             val_fraction: float = 0.0, brain_mask: bool = False) -> Iterator[Case]:
    """Make and write ``n`` phantoms, yielding each manifest row as it is written.

    The last ``round(val_fraction * n)`` cases get split "val", the others "train".
    ``brain_mask`` (brain only) writes each case's brain mask as its manifest ``mask``.
    Call :func:`finish` with the rows to write the manifest.
    """
    if brain_mask and kind != "brain":
        raise ValueError(f"brain_mask: {kind} phantoms have no brain mask")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    out = Path(out)
    n_val = int(round(val_fraction * n))
    for i in range(n):
        ph = make_phantom(kind, case_rng(seed, i), shape, spacing, lesions)
        if i == 0:
            labels = {str(k): v for k, v in sorted(ph.labels.items())}
            atomic_write_text(out / "labels.json", json.dumps({kind: labels}, indent=1))
        yield write_case(out, f"{kind}_{i:04d}", ph, "val" if i >= n - n_val else "train", brain_mask)


def finish(out: str | os.PathLike, cases: list[Case]) -> Path:
    """Write ``OUT/manifest.csv`` (atomically) for the cases written."""
    return write_manifest(cases, Path(out) / "manifest.csv")
