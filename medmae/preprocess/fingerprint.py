"""Dataset fingerprint (nnU-Net style): source geometry and body intensity statistics.

Per case, :func:`intensity_stats` summarises the raw (un-normalised) intensities inside the
body mask on the resampled grid, per channel; :func:`build_fingerprint` pools the cases of
each modality: median / min / max of source spacings and shapes, and per channel the
exact pooled mean and std plus the median over cases of each percentile.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

PERCENTILES = (0.5, 50.0, 99.5)


def intensity_stats(image: np.ndarray, body: np.ndarray) -> list[dict]:
    """(C, X, Y, Z) raw intensities, bool (X, Y, Z) body -> one stats dict per channel."""
    out = []
    for channel in image:
        v = channel[body].astype(np.float64)
        pct = np.percentile(v, PERCENTILES) if v.size else [float("nan")] * len(PERCENTILES)
        out.append({
            "n": int(v.size), "mean": float(v.mean()) if v.size else float("nan"),
            "std": float(v.std()) if v.size else float("nan"),
            "min": float(v.min()) if v.size else float("nan"),
            "max": float(v.max()) if v.size else float("nan"),
            **{f"p{p:g}": float(x) for p, x in zip(PERCENTILES, pct)},
        })
    return out


def _pool_channel(stats: list[dict]) -> dict:
    """Pool per-case stats of one channel: exact mean/std over all voxels, median percentiles."""
    n = np.array([s["n"] for s in stats], dtype=np.float64)
    mean = np.array([s["mean"] for s in stats])
    var = np.array([s["std"] for s in stats]) ** 2
    total = n.sum()
    pooled_mean = float((n * mean).sum() / total)
    pooled_var = float((n * (var + (mean - pooled_mean) ** 2)).sum() / total)
    out = {"cases": len(stats), "voxels": int(total), "mean": pooled_mean, "std": pooled_var ** 0.5,
           "min": min(s["min"] for s in stats), "max": max(s["max"] for s in stats)}
    for p in PERCENTILES:
        out[f"p{p:g}"] = float(np.median([s[f"p{p:g}"] for s in stats]))
    return out


def _axis_summary(rows: list[list[float]]) -> dict:
    a = np.asarray(rows, dtype=np.float64)
    return {"median": np.median(a, axis=0).tolist(), "min": a.min(axis=0).tolist(),
            "max": a.max(axis=0).tolist()}


def build_fingerprint(summaries: list[dict]) -> dict:
    """Pool case summaries (keys modality, source_spacing, source_shape, intensity) by modality."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for s in summaries:
        groups[s["modality"]].append(s)
    out = {}
    for modality, cases in sorted(groups.items()):
        channels = max(len(c["intensity"]) for c in cases)
        out[modality] = {
            "cases": len(cases),
            "source_spacing": _axis_summary([c["source_spacing"] for c in cases]),
            "source_shape": _axis_summary([c["source_shape"] for c in cases]),
            "intensity": [_pool_channel([c["intensity"][i] for c in cases
                                         if i < len(c["intensity"]) and c["intensity"][i]["n"]])
                          for i in range(channels)],
        }
    return out
