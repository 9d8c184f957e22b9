"""The clinician report: one self-contained HTML file that opens offline.

Every image is embedded (base64 PNG data URI); nothing is fetched. It holds a worklist of
the cases ranked by case score (rows carry ``data-score`` and ``data-rank`` for checks),
one montage per case through its most anomalous region, the ROC/PR curves and results
table of an evaluation (model beside the baselines) when given, and the settings. It
shows case ids and numbers only: no names, dates or header values (case ids come from
the manifest, which must not hold patient identity).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from medmae.atomic import atomic_write_text
from medmae.heads.anomaly.montage import save_montage
from medmae.heads.anomaly.scored import read_settings

STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1000px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#eee}.case{margin:1.5em 0}
img{max-width:100%}pre{background:#f6f6f6;padding:8px;font-size:11px;overflow:auto}
.warn{color:#a00}"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _records(run: Path) -> list[dict]:
    recs = [json.loads(p.read_text()) for p in sorted((run / "cases").glob("*/case.json"))]
    return sorted(recs, key=lambda r: -r["score"])


def _worklist(recs: list[dict]) -> str:
    rows = []
    for rank, r in enumerate(recs, 1):
        pct = (r.get("percentiles") or {}).get("model")
        cid = html.escape(r["case_id"])
        rows.append(f'<tr class="worklist-row" data-rank="{rank}" data-score="{r["score"]:.6g}">'
                    f'<td>{rank}</td><td><a href="#case-{cid}">{cid}</a></td><td>{r["score"]:.4g}</td>'
                    f'<td>{"" if pct is None else f"{pct:.0f}"}</td><td>{r["scores"]["baseline"]:.4g}</td>'
                    f'<td>{r.get("binary_voxels", "")}</td></tr>')
    return ("<table id='worklist'><tr><th>rank</th><th>case</th><th>score</th><th>healthy percentile</th>"
            "<th>baseline score</th><th>flagged voxels</th></tr>" + "".join(rows) + "</table>")


def _evaluation(eval_dir: Path | None) -> str:
    if eval_dir is None or not (eval_dir / "evaluation.json").is_file():
        return "<p>No evaluation against lesion masks was run for these scans.</p>"
    data = json.loads((eval_dir / "evaluation.json").read_text())
    from medmae.heads.anomaly.results import LABELS, ROWS

    names = list(data["maps"])
    head = "<tr><th>metric</th>" + "".join(f"<th>{LABELS[n]}</th>" for n in names) + "</tr>"
    body = ""
    for key, label in ROWS:
        cells = ""
        for n in names:
            v = data["maps"][n]["metrics"].get(key)
            ci = data["maps"][n]["ci95"].get(key)
            txt = "n/a" if v is None else f"{v:.3f}"
            if ci and ci[0] is not None:
                txt += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
            cells += f"<td>{txt}</td>"
        body += f"<tr><td>{html.escape(label)}</td>{cells}</tr>"
    curves = _img(eval_dir / "curves.png", "ROC and PR curves") if (eval_dir / "curves.png").is_file() else ""
    return (f"<p>{data['cases']} cases. Brackets: bootstrap 95% intervals over cases. The ORACLE Dice is tuned on "
            f"these very scans: an upper bound, not a result.</p><table id='results'>{head}{body}</table>{curves}")


def write_report(run: str | Path, out: str | Path, eval_dir: str | Path | None = None) -> Path:
    """Report on a ``score`` output folder (plus an ``evaluate`` folder) -> ``out`` (HTML);
    the montage PNGs are also kept in ``<out folder>/report_images/``."""
    run, out = Path(run), Path(out)
    settings = read_settings(run)
    recs = _records(run)
    images = out.parent / "report_images"
    cal = settings.get("calibration")
    thr = cal["thresholds"]["model"][f"{cal['binary_fpr']:g}"] if cal else None
    cases = []
    for rank, r in enumerate(recs, 1):
        preview = dict(np.load(run / "cases" / r["case_id"] / "preview.npz"))
        png, spot = save_montage(preview, images / f"case_{rank:03d}.png", thr,
                                 f"#{rank}  {r['case_id']}  score {r['score']:.4g}")
        cases.append(f'<div class="case" id="case-{html.escape(r["case_id"])}"><h3>#{rank} {html.escape(r["case_id"])}'
                     f'</h3>{_img(png, "montage " + r["case_id"])}<p>hotspot voxel {spot} (preprocessed grid); '
                     f'overlay: map above {"the calibrated threshold" if thr is not None else "its 99th percentile"}; '
                     'yellow: binary map; green: lesion mask.</p></div>')
    warn = "".join(f'<p class="warn">{html.escape(w)}</p>' for w in settings.get("warnings", []))
    shown = {k: settings[k] for k in ("model", "settings_digest", "score_statistic", "calibration", "config")}
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>medmae anomaly report</title>"
            f"<style>{STYLE}</style></head><body><h1>Anomaly report</h1>"
            "<p>Research tool, not a diagnostic device. Maps show where the model's reconstruction differs "
            "from the scan; they are not findings.</p>"
            f"{warn}<h2>Worklist</h2><p>Ranked by case score ({html.escape(settings['score_statistic'])}).</p>"
            f"{_worklist(recs)}<h2>Evaluation</h2>{_evaluation(Path(eval_dir) if eval_dir else None)}"
            f"<h2>Cases</h2>{''.join(cases)}<h2>Settings</h2><pre>{html.escape(json.dumps(shown, indent=1))}</pre>"
            "</body></html>")
    return atomic_write_text(out, page)
