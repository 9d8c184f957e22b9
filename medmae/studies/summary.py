"""The study's comparison: one row per (variant, seed), a mean ± sd table per variant, plots.

Columns are every metric the steps produced for that variant and seed, prefixed with the
step kind (``pretrain.loss_over_mean_predictor``, later ``anomaly.auprc``, ``segmentation.dice``).
The plot shows each metric per variant, with the seeds as points and their spread as
error bars.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from pathlib import Path

from medmae.atomic import atomic_write, atomic_write_text

SKIP = {"steps"}


def rows_from_results(results: list[tuple[dict, str, dict]]) -> list[dict]:
    """[(labels, kind, result)] -> one row per (variant, seed) with ``kind.metric`` columns."""
    rows: dict[tuple, dict] = {}
    for labels, kind, result in results:
        if "variant" not in labels:
            continue
        key = (labels["variant"], labels["seed"])
        row = rows.setdefault(key, {"variant": labels["variant"], "strategy": labels.get("strategy", ""),
                                    "seed": labels["seed"]})
        for name, value in result.get("metrics", {}).items():
            if name not in SKIP:
                row[f"{kind}.{name}"] = float(value)
    return [rows[k] for k in sorted(rows, key=lambda k: (str(k[0]), k[1]))]


def metric_columns(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if "." in k and k not in cols]
    return cols


def aggregate(rows: list[dict]) -> list[dict]:
    """Per variant: mean and sample sd over seeds of every metric column."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["variant"]].append(r)
    out = []
    for variant, rs in groups.items():
        agg = {"variant": variant, "strategy": rs[0]["strategy"], "seeds": len(rs)}
        for c in metric_columns(rs):
            vals = [r[c] for r in rs if c in r and math.isfinite(r[c])]
            mean = statistics.fmean(vals) if vals else float("nan")
            agg[c] = (mean, statistics.stdev(vals) if len(vals) > 1 else 0.0)
        out.append(agg)
    return out


def to_csv(rows: list[dict]) -> str:
    cols = ["variant", "strategy", "seed", *metric_columns(rows)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: (f"{r[c]:.6g}" if isinstance(r.get(c), float) else r.get(c, "")) for c in cols})
    return buf.getvalue()


def to_markdown(name: str, rows: list[dict]) -> str:
    agg = aggregate(rows)
    cols = metric_columns(rows)
    lines = [f"# Study `{name}`", "", "Mean ± sd over seeds per pretraining variant.", "",
             "| variant | strategy | seeds | " + " | ".join(cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for a in agg:
        cells = [f"{a[c][0]:.4g} ± {a[c][1]:.2g}" if c in a else "" for c in cols]
        lines.append(f"| {a['variant']} | {a['strategy']} | {a['seeds']} | " + " | ".join(cells) + " |")
    lines += ["", "Per seed:", "", "| variant | seed | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['seed']} | " + " | ".join(
            f"{r[c]:.4g}" if c in r else "" for c in cols) + " |")
    return "\n".join(lines) + "\n"


def plot(name: str, rows: list[dict], path: Path) -> Path:
    """One panel per metric (six to a row): variants on x, seeds as dots, mean ± sd as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = metric_columns(rows) or ["none"]
    agg = aggregate(rows)
    ncols = min(6, len(cols))
    nrows = math.ceil(len(cols) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(cols):]:
        ax.axis("off")
    for ax, c in zip(axes.flat, cols):
        xs = list(range(len(agg)))
        ax.errorbar(xs, [a.get(c, (math.nan, 0))[0] for a in agg], yerr=[a.get(c, (0, 0))[1] for a in agg],
                    fmt="o", capsize=4, color="black")
        for i, a in enumerate(agg):
            seeds = [r[c] for r in rows if r["variant"] == a["variant"] and c in r]
            ax.scatter([i] * len(seeds), seeds, s=12, alpha=0.6)
        ax.set_xticks(xs, [a["variant"] for a in agg], rotation=30, ha="right")
        ax.set_title(c, fontsize=9)
    fig.suptitle(f"study {name}")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)


def write_summary(name: str, rows: list[dict], out: Path) -> list[Path]:
    """OUT/summary.csv, OUT/summary.md, OUT/summary.png."""
    return [atomic_write_text(out / "summary.csv", to_csv(rows)),
            atomic_write_text(out / "summary.md", to_markdown(name, rows)),
            plot(name, rows, out / "summary.png")]
