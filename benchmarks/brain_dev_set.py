"""Issue 20's development set on T2: two gliomas and a healthy brain with inserted real lesions.

T2 is the one sequence both the gliomas (TCGA-DU-7294, TCGA-FG-6692: FLAIR/T1/T1c/T2) and the
healthy adult (IXI002: T1/T2) have, so one single-channel model covers all of them. Written
under OUT (nothing elsewhere):

  OUT/scans/*.nii.gz           brain masks (nonzero of the skull-stripped scan), labels,
                               IXI002 T2 with two inserted stroke lesions
  OUT/lesions.csv              the 4 lesion scans with labels (pretraining: the patients' own
                               scans, unlabelled; evaluation: with their labels)
  OUT/healthy.csv              IXI002 T2 itself (the only healthy T2: the same brain as the
                               inserted-lesion scans, so anything calibrated on it is in-sample)

Inserted lesions (medmae/synth/inserted.py): the stroke masks nearest 5 ml and 25 ml in MNI
space (bwsrsub-183: 4.9 ml, bwsrsub-1252: 26.2 ml; chosen by that rule before any scoring),
registered MNI152 -> IXI002 T1 (affine), gain +0.6 (60 % brighter, texture kept). Glioma labels:
the BraTS-ensemble pseudo-labels > 0 (whole tumour; agreement with that ensemble, not accuracy).

    python benchmarks/brain_dev_set.py --out /tmp/brain_dev
    python benchmarks/brain_dev_set.py --out /tmp/brain_flair --flair   # OUT/flair.csv: the gliomas' FLAIR
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np

from medmae.atomic import atomic_write, atomic_write_text
from medmae.synth.inserted import insert, mask_on, register_mni

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "brain"
"""../shared/data/brain beside the repository (--data to name another copy)."""
STROKES = ("bwsrsub-183", "bwsrsub-1252")
GAIN = 0.6


def _save(array: np.ndarray, like: nib.Nifti1Image, path: Path, dtype) -> str:
    img = nib.Nifti1Image(array.astype(dtype), like.affine)
    img.set_qform(like.affine, 1)
    img.set_sform(like.affine, 1)
    data = gzip.compress(img.to_bytes(), compresslevel=1)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return str(path)


def _write_manifest(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, ["case_id", "image", "modality", "sequence", "label", "mask", "split"])
    w.writeheader()
    w.writerows({**r, "split": "train"} for r in rows)
    atomic_write_text(path, buf.getvalue())


def _gliomas(out: Path, data: Path, sequence: str) -> list[dict]:
    scans = out / "scans"
    scans.mkdir(parents=True, exist_ok=True)
    rows = []
    for g in ("glioma_TCGA-DU-7294", "glioma_TCGA-FG-6692"):
        img = nib.load(data / g / f"{sequence}.nii.gz")
        a = np.asarray(img.dataobj)
        lab = np.asarray(nib.load(data / g / "tumour_pseudolabel.nii.gz").dataobj) > 0
        rows.append({"case_id": g, "image": str(data / g / f"{sequence}.nii.gz"), "modality": "MR",
                     "sequence": sequence, "label": _save(lab, img, scans / f"{g}_label.nii.gz", np.uint8),
                     "mask": _save(a > 0, img, scans / f"{g}_brain.nii.gz", np.uint8)})
    return rows


def build_flair(out: Path, data: Path = DATA) -> Path:
    """The FLAIR check: the two gliomas' FLAIR with their labels (no healthy FLAIR exists in the
    set: pretraining on the patients' own scans, no calibration). Returns OUT/flair.csv."""
    out, data = out.resolve(), data.resolve()
    path = out / "flair.csv"
    _write_manifest(path, _gliomas(out, data, "flair"))
    return path


def build(out: Path, data: Path = DATA) -> tuple[Path, Path]:
    """Write the set under ``out``; the manifests name every file by its absolute path (a
    relative one would be read against the manifest's own folder)."""
    out, data = out.resolve(), data.resolve()
    scans = out / "scans"
    rows = _gliomas(out, data, "t2")
    ixi = data / "healthy_IXI002"
    img = nib.load(ixi / "t2.nii.gz")
    a = np.asarray(img.dataobj).astype(np.float32)
    brain = np.asarray(nib.load(ixi / "t2_brainmask.nii.gz").dataobj) > 0
    brain_path = _save(brain, img, scans / "IXI002_brain.nii.gz", np.uint8)
    transform = register_mni(ixi / "t1.nii.gz")
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    for s in STROKES:
        lesion = mask_on(ixi / "t2.nii.gz", data / "stroke_lesion_masks_mni" / f"{s}_lesion.nii.gz", transform)
        new, label = insert(a, lesion, brain, spacing, GAIN)
        cid = f"IXI002_{s}"
        rows.append({"case_id": cid, "image": _save(new, img, scans / f"{cid}_t2.nii.gz", np.float32),
                     "modality": "MR", "sequence": "t2",
                     "label": _save(label, img, scans / f"{cid}_label.nii.gz", np.uint8), "mask": brain_path})
    healthy = [{"case_id": "IXI002", "image": str(ixi / "t2.nii.gz"), "modality": "MR", "sequence": "t2",
                "label": "", "mask": brain_path}]
    paths = (out / "lesions.csv", out / "healthy.csv")
    for path, rs in zip(paths, (rows, healthy)):
        _write_manifest(path, rs)
    return paths


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=DATA, help="the brain data folder (default: %(default)s)")
    p.add_argument("--flair", action="store_true", help="the FLAIR check instead: OUT/flair.csv, the gliomas' FLAIR")
    a = p.parse_args()
    for path in ([build_flair(a.out, a.data)] if a.flair else build(a.out, a.data)):
        print(path)
