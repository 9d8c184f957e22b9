"""Figures of ``medmae segment evaluate``: mean Dice against label count and against
corruption strength, one line per arm (pretrained beside scratch)."""

from __future__ import annotations

from pathlib import Path

from medmae.atomic import atomic_write


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    plt.close(fig)
    return path


def plot_dice(summary: list[dict], out: Path) -> list[Path]:
    """``summary`` rows (see evaluate.summarise) -> dice_vs_labels.png, dice_vs_<kind>.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = [r for r in summary if r["class"] == "mean"]
    arms = sorted({r["arm"] for r in mean})
    files = []
    clean = [r for r in mean if r["corruption"] == "clean"]
    if len({r["label_cases"] for r in clean}) > 1:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for arm in arms:
            pts = sorted((r["label_cases"], r["dice"], r["dice_sd"]) for r in clean if r["arm"] == arm)
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                        capsize=3, label=arm)
        ax.set(xlabel="labelled training cases", ylabel="mean Dice (clean)", title="Dice vs label count", ylim=(0, 1))
        ax.legend()
        files.append(_save(fig, out / "dice_vs_labels.png"))
    for kind in sorted({r["corruption"] for r in mean} - {"clean"}):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for arm in arms:
            for n in sorted({r["label_cases"] for r in mean if r["arm"] == arm}, key=str):
                pts = sorted((0.0 if r["corruption"] == "clean" else r["strength"], r["dice"]) for r in mean
                             if r["arm"] == arm and r["label_cases"] == n and r["corruption"] in ("clean", kind))
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{arm} (n={n})")
        ax.set(xlabel=f"{kind} strength", ylabel="mean Dice", title=f"Dice vs {kind}", ylim=(0, 1))
        ax.legend(fontsize=7)
        files.append(_save(fig, out / f"dice_vs_{kind}.png"))
    return files
