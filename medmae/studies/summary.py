"""The study's comparison: one row per (variant, seed), a mean ± sd table per variant, plots.

``summary.txt`` holds the few headline numbers for a terminal (r on held-out scans beside
interpolation, anomaly AUPRC beside the intensity baseline, Dice pretrained vs scratch);
``summary.md`` that table, then every metric as a row; ``summary.csv`` every seed.

Columns are every metric the steps produced for that variant and seed, prefixed with the
step kind (``pretrain.loss_over_baseline``, later ``anomaly.auprc``, ``segmentation.dice``).
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
    """Per variant: (mean, sample sd) over seeds of every metric column; the sd is NaN with
    fewer than two finite values (one seed has no spread to report, not a spread of 0)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["variant"]].append(r)
    out = []
    for variant, rs in groups.items():
        agg = {"variant": variant, "strategy": rs[0]["strategy"], "seeds": len(rs)}
        for c in metric_columns(rs):
            vals = [r[c] for r in rs if c in r and math.isfinite(r[c])]
            mean = statistics.fmean(vals) if vals else float("nan")
            agg[c] = (mean, statistics.stdev(vals) if len(vals) > 1 else float("nan"))
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


def mean_sd(pair: tuple[float, float] | None) -> str:
    """'0.781 ± 0.012'; '0.781 ± n/a' when the spread is undefined (one seed); '' when absent."""
    if pair is None:
        return ""
    mean, sd = pair
    return f"{mean:.4g} ± " + (f"{sd:.2g}" if math.isfinite(sd) else "n/a")


HEADLINE = (  # (title, main column, reference column shown beside it, joiner)
    ("r real scans (interp)", "pretrain.hidden_corr_real", "pretrain.interp_hidden_corr_real", "paren"),
    ("AUPRC (baseline)", "anomaly.model_voxel_auprc", "anomaly.baseline_voxel_auprc", "paren"),
    ("Dice pre / scratch", "segmentation.dice", "segmentation.dice_scratch", "slash"),
)


def _reference(agg: dict, col: str) -> tuple[float, float] | None:
    """``col``'s value; for ``segmentation.dice_scratch`` the one at the most labels."""
    if col in agg:
        return agg[col]
    found = sorted((int(k.rsplit("_n", 1)[1]), k) for k in agg
                   if k.startswith(col + "_n") and k.rsplit("_n", 1)[1].isdigit())
    return agg[found[-1][1]] if found else None


def headline(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """(header, one row per variant) of the few headline numbers, means over seeds, the
    reference (interpolation, intensity baseline, scratch) beside each; columns no step made are left out."""
    agg = aggregate(rows)
    used = [h for h in HEADLINE if any(h[1] in a for a in agg)]
    header = ["variant", "seeds", *[h[0] for h in used]]
    body = []
    for a in agg:
        cells = [str(a["variant"]), str(a["seeds"])]
        for _, main, ref, how in used:
            m, r = a.get(main), _reference(a, ref)
            text = "" if m is None else f"{m[0]:.3g}"
            if m is not None and r is not None:
                text += f" ({r[0]:.3g})" if how == "paren" else f" / {r[0]:.3g}"
            cells.append(text)
        body.append(cells)
    return header, body


def terminal_table(name: str, rows: list[dict]) -> str:
    """The headline table as aligned plain text (under 80 columns for a few variants)."""
    header, body = headline(rows)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    seeds = {r["seed"] for r in rows}
    note = "means over seeds" if len(seeds) > 1 else "one seed"
    return "\n".join([f"study {name} ({note}; every metric: summary.md, summary.csv)",
                       line(header),
                       line(["-" * w for w in widths]), *[line(b) for b in body]]) + "\n"


def to_markdown(name: str, rows: list[dict]) -> str:
    """The headline table, then every metric as a row (variants as columns, so the table
    stays narrow however many metrics there are), then every seed."""
    agg = aggregate(rows)
    cols = metric_columns(rows)
    header, body = headline(rows)
    lines = [f"# Study `{name}`", "", "Headline numbers: means over seeds, the reference in brackets "
             "(interpolation from the visible patches; the intensity baseline) or after the slash (scratch).", "",
             "| variant | strategy | " + " | ".join(header[1:]) + " |", "|---|---|" + "---|" * (len(header) - 1)]
    for a, b in zip(agg, body):
        lines.append(f"| {a['variant']} | {a['strategy']} | " + " | ".join(b[1:]) + " |")
    lines += ["", "Every metric: mean ± sd over seeds (n/a: one seed, whose spread is undefined).", "",
              "| metric | " + " | ".join(str(a["variant"]) for a in agg) + " |", "|---|" + "---|" * len(agg)]
    lines += [f"| {c} | " + " | ".join(mean_sd(a.get(c)) for a in agg) + " |" for c in cols]
    lines += ["", "Per seed:", "", "| metric | " + " | ".join(f"{r['variant']} s{r['seed']}" for r in rows) + " |",
              "|---|" + "---|" * len(rows)]
    lines += [f"| {c} | " + " | ".join(f"{r[c]:.4g}" if c in r else "" for r in rows) + " |" for c in cols]
    return "\n".join(lines) + "\n"


BOUNDED = ("auroc", "auprc", "dice", "f1", "corr", "edge_r", "_r_", "accuracy")
"""Metric name parts of scores in [0, 1] (correlations in [-1, 1]): drawn on their whole range."""


def axis_range(col: str, values: list[float]) -> tuple[float, float]:
    """Honest y limits for one panel: a gain or difference centred on zero; a bounded score
    on its whole range (0..1, down to -1 for a negative correlation); anything else from
    zero. So a difference in the fourth decimal looks as small as it is."""
    vals = [v for v in values if math.isfinite(v)] or [0.0]
    name = col.split(".", 1)[-1]
    if "gain" in name or name.endswith(("_diff", "_delta")):
        m = max(max(abs(v) for v in vals), 1e-3) * 1.15
        return -m, m
    if any(part in f"_{name}_" for part in BOUNDED):
        return (-1.05 if min(vals) < 0 else 0.0), 1.05
    lo, hi = min(0.0, *vals), max(0.0, *vals)
    pad = 0.08 * (hi - lo) or 1.0
    return lo - (pad if lo < 0 else 0.0), hi + pad


def plot(name: str, rows: list[dict], path: Path) -> Path:
    """One panel per metric (six to a row): variants on x, seeds as dots, mean ± sd as error
    bars (none with one seed), y limits from :func:`axis_range`, a zero line on gains."""
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
        sd = [a.get(c, (0, 0))[1] for a in agg]
        ax.errorbar(xs, [a.get(c, (math.nan, 0))[0] for a in agg], yerr=[v if math.isfinite(v) else 0 for v in sd],
                    fmt="o", capsize=4, color="black")
        for i, a in enumerate(agg):
            seeds = [r[c] for r in rows if r["variant"] == a["variant"] and c in r]
            ax.scatter([i] * len(seeds), seeds, s=12, alpha=0.6)
        ax.set_ylim(*axis_range(c, [r[c] for r in rows if c in r]))
        ax.axhline(0.0, color="grey", lw=0.8, zorder=0)
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        ax.set_xlim(-0.6, len(agg) - 0.4)
        ax.set_xticks(xs, [a["variant"] for a in agg], rotation=30, ha="right")
        ax.set_title(c, fontsize=9)
    fig.suptitle(f"study {name}")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)


def write_summary(name: str, rows: list[dict], out: Path) -> list[Path]:
    """OUT/summary.csv (every seed, every metric), OUT/summary.md (headline, every metric,
    every seed), OUT/summary.txt (the headline table for a terminal), OUT/summary.png."""
    return [atomic_write_text(out / "summary.csv", to_csv(rows)),
            atomic_write_text(out / "summary.md", to_markdown(name, rows)),
            atomic_write_text(out / "summary.txt", terminal_table(name, rows)),
            plot(name, rows, out / "summary.png")]
