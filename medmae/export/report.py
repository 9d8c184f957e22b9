"""What happened when exported weights were loaded into a network, key by key."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


POS_RESIZE_WHY = {
    "sincos": "sin-cos regenerated for the new grid: each token keeps its pretraining code, the field of "
              "view changes (resize='trilinear' stretches the trained grid instead)",
    "trilinear": "trilinear resampling: the trained grid is stretched over the new one, the field of view "
                 "is kept (resize='sincos' regenerates the code instead)",
}
"""Why each position-embedding resize, in one line of the report."""


class LoadError(ValueError):
    """Weights that do not fit the target network (the message is the full report)."""


def _index_label(idx: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    runs: list[list[int]] = []
    for i in sorted(idx):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def compress_keys(keys: list[str]) -> list[str]:
    """Fold per-block keys: ``blocks.0.x`` .. ``blocks.11.x`` -> ``blocks.[0-11].x``."""
    groups: dict[str, list[int]] = {}
    singles: dict[str, str] = {}
    for k in keys:
        m = re.match(r"(.*?blocks\.)(\d+)(\..*)", k)
        if m is None:
            singles[k] = k
            continue
        pattern = m.group(1) + "#" + m.group(3)
        groups.setdefault(pattern, []).append(int(m.group(2)))
        singles.setdefault(pattern, k)
    return [singles[p] if p not in groups or len(groups[p]) == 1 else p.replace("#", f"[{_index_label(groups[p])}]")
            for p in singles]


@dataclass
class LoadReport:
    """Key-level account of a load. Keys are the TARGET network's names.

    loaded:     target tensors overwritten with exported values.
    missing:    target tensors the export has nothing for (left at their initial values).
    unexpected: exported tensors the target has no place for (source names).
    mismatched: (key, exported shape, target shape) pairs that could not be copied.
    resized:    (key, exported grid, target grid, how) position embeddings resized
                (how: "sincos" rebuilt for the new grid, or "trilinear" resampling).
    unused:     target tensors its forward never reads (MONAI's ``norm_cross_attn``), left as is.
    hints:      what to change when something did not fit.
    """

    target: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    resized: list[tuple[str, tuple, tuple, str]] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every exported tensor found its place and every used target tensor was filled."""
        return not (self.missing or self.unexpected or self.mismatched)

    def format(self) -> str:
        """Human-readable multi-line summary (what the CLI prints)."""
        total = len(self.loaded) + len(self.missing) + len(self.mismatched)
        lines = [f"load into {self.target}: {'OK' if self.ok else 'DOES NOT FIT'}",
                 f"  loaded      {len(self.loaded)}/{total} tensors"]
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            lines.append(f"  {label:<11} {len(keys)}" + "".join(f"\n    - {k}" for k in compress_keys(keys)))
        lines.append(f"  mismatched  {len(self.mismatched)}")
        lines += [f"    - {k}: export {tuple(a)} vs target {tuple(b)}" for k, a, b in self.mismatched]
        for k, a, b, how in self.resized:
            lines.append(f"  resized     {k}: grid {tuple(a)} -> {tuple(b)} ({how})")
            lines.append(f"              {POS_RESIZE_WHY.get(how, how)}")
        if self.unused:
            lines.append(f"  untouched   {len(self.unused)} tensors the target never uses: "
                         + ", ".join(compress_keys(self.unused)))
        lines += [f"  hint: {h}" for h in self.hints]
        return "\n".join(lines)

    def raise_unless_ok(self) -> None:
        if not self.ok:
            raise LoadError(self.format())
