"""Pictures of each masking strategy's masks on a real brain (MNI152 T1, nilearn), for docs/masking.md.

    python docs/figures/make_masking_figures.py [--out docs/figures]

Writes ``masking_strategies.png``: one row per strategy, the axial, coronal and sagittal
slices through the crop centre, hidden tokens shaded. The crop is 96³ at 2 mm with patch 8
(a 12³ token grid), on the template's tissue classes (grey / white matter / CSF) as the
anatomy map, so the anatomy and symmetric rows hide whole tissue units.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from medmae.masking.anatomy import AnatomyMasking  # noqa: E402
from medmae.masking.block import BlockMasking  # noqa: E402
from medmae.masking.context import build_context  # noqa: E402
from medmae.masking.random import RandomMasking  # noqa: E402
from medmae.tokens import unpatchify  # noqa: E402

CROP, PATCH, RATIO = 96, 8, 0.6


def mni_crop() -> dict[str, torch.Tensor]:
    """The MNI152 T1 at 2 mm, cropped to 96³ around the brain, with tissue classes 1..3."""
    from nilearn.datasets import (load_mni152_brain_mask, load_mni152_gm_template,
                                  load_mni152_template, load_mni152_wm_template)
    t1 = load_mni152_template(resolution=2).get_fdata()
    brain = load_mni152_brain_mask(resolution=2).get_fdata() > 0
    gm = load_mni152_gm_template(resolution=2).get_fdata()
    wm = load_mni152_wm_template(resolution=2).get_fdata()
    tissue = np.where(brain, np.where(wm > gm, 2, np.where(gm > 0.2, 1, 3)), 0)
    x0 = -load_mni152_template(resolution=2).affine[0, 3] / 2.0  # voxel of world x = 0
    lo = [int(round(x0 + 0.5)) - CROP // 2] + [(s - CROP) // 2 for s in t1.shape[1:]]
    box = tuple(slice(max(0, a), max(0, a) + CROP) for a in lo)
    pad = lambda a: np.pad(a[box], [(0, CROP - n) for n in a[box].shape])  # noqa: E731
    img = pad((t1 - t1[brain].mean()) / t1[brain].std())
    as5 = lambda a, dt: torch.as_tensor(np.ascontiguousarray(a), dtype=dt)[None, None]  # noqa: E731
    return {"image": as5(img, torch.float32), "body": as5(pad(brain), torch.uint8),
            "anatomy": as5(pad(tissue), torch.int64)}


STRATEGIES = {
    "random": lambda: RandomMasking(RATIO),
    "block (1-3 tokens)": lambda: BlockMasking(RATIO, 1, 3),
    "anatomy (tissue units)": lambda: AnatomyMasking(RATIO, "anatomy"),
    "anatomy, symmetric both": lambda: AnatomyMasking(RATIO, "anatomy", symmetric="both"),
    "anatomy, symmetric mirror": lambda: AnatomyMasking(0.45, "anatomy", symmetric="mirror"),
}


def masks(batch: dict[str, torch.Tensor], foreground: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """Strategy name -> (X, Y, Z) bool voxel mask of hidden tokens."""
    ctx = build_context(batch, (PATCH,) * 3, foreground_only=foreground, min_fraction=0.25, device="cpu")
    out = {}
    for name, make in STRATEGIES.items():
        m = make()(ctx, 0, torch.Generator().manual_seed(seed))  # (1, N)
        tokens = m.float()[..., None].expand(-1, -1, PATCH ** 3)
        out[name] = unpatchify(tokens, (PATCH,) * 3, ctx.grid, 1)[0, 0].numpy() > 0.5
    return out


def plot(batch: dict[str, torch.Tensor], hidden: dict[str, np.ndarray], path: Path) -> Path:
    img = batch["image"][0, 0].numpy()
    c = CROP // 2
    cuts = {"axial": lambda a: a[:, :, c].T, "coronal": lambda a: a[:, c, :].T,
            "sagittal": lambda a: a[c, :, :].T}
    fig, axes = plt.subplots(len(hidden), 3, figsize=(7.5, 2.5 * len(hidden)))
    for row, (name, m) in zip(axes, hidden.items()):
        for ax, (view, cut) in zip(row, cuts.items()):
            ax.imshow(cut(img), cmap="gray", origin="lower")
            ax.imshow(np.ma.masked_where(~cut(m), cut(m)), cmap="autumn", alpha=0.55, origin="lower")
            ax.set_xticks([]), ax.set_yticks([])
            if row is axes[0]:
                ax.set_title(view)
        row[0].set_ylabel(name, fontsize=8)
    fig.suptitle(f"MNI152 T1, 96³ at 2 mm, patch {PATCH}, foreground-only; shaded = hidden", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).parent))
    args = ap.parse_args(argv)
    batch = mni_crop()
    path = plot(batch, masks(batch, foreground=True), Path(args.out) / "masking_strategies.png")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
