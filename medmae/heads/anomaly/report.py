"""The clinician report: one HTML file that opens offline.

Every image and viewer volume is embedded (base64 data URIs); the viewer's script (NiiVue)
is written once beside the report as niivue.js; nothing is fetched from a network. It
holds a worklist of the cases ranked by case score (rows carry ``data-score`` and
``data-rank`` for checks); per case its acquisition and quality lines, a montage in
radiological convention through each listed region, the findings table and an interactive
viewer; the ROC/PR curves and results table of an evaluation (model beside the baselines)
when given; a version and date line; the raw settings in a collapsed section. It shows case
ids and numbers only: no names, dates or header values (case ids come from the manifest,
which must not hold patient identity). Every scored case has its section or a line saying
why not.
"""

from __future__ import annotations

import base64
import csv
import datetime
import json
import zipfile
from pathlib import Path

import numpy as np

from medmae import __version__
from medmae.atomic import atomic_write_text
from medmae.heads.anomaly.config import MAP_LABELS, run_map_names
from medmae.heads.anomaly.montage import save_montage
from medmae.heads.anomaly.report_case import (acquisition_lines, case_points, esc, findings_table, map_unit,
                                              percentile_text, protocol_flags, read_acquisition)
from medmae.heads.anomaly.scored import read_settings
from medmae.heads.anomaly.viewer import VIEWER_JS, case_data, case_viewer, write_script

VIEWER_REGIONS = 10
"""Listed regions the viewer has a button for."""
MIN_HEALTHY = 10
"""Fewer healthy calibration scans than this: the healthy percentile is shown as insufficient."""
STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1250px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#eee}.case{margin:1.5em 0}
img{max-width:100%}pre{background:#f6f6f6;padding:8px;font-size:11px;overflow:auto}
.warn,.flag{color:#a00}.acq{font-size:13px;margin:0.2em 0}.missing{color:#a00}"""
CONVENTION = ("Views are in radiological convention: in axial and coronal views the patient's right is on the "
              "viewer's left; sagittal views have anterior on the left. Each view carries its orientation letters "
              "(R/L right/left, A/P anterior/posterior, S/I superior/inferior) and a scale bar.")
LEGEND = ("Colour: the anomaly map above the display threshold (colour bar, in the map's unit); solid cyan contour: "
          "binary map (flagged regions); dashed lime contour: reference lesion mask; white numbered crosshairs: "
          "the listed regions.")


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def _unfinished(path: Path, cases: Path) -> bool:
    """A file inside a hidden folder under cases/: a case folder still being written (or left by a kill)."""
    return any(part.startswith(".") for part in path.relative_to(cases).parts[:-1])


def _records(run: Path) -> tuple[list[tuple[dict, Path]], list[str]]:
    """(record, case folder) of every readable case.json under cases/ (nested folders too), highest score
    first; and a line for each case.json that cannot be read."""
    recs, problems = [], []
    for path in sorted((run / "cases").rglob("case.json")):
        if _unfinished(path, run / "cases"):
            continue
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
            float(rec["score"]), str(rec["case_id"]), float(rec["scores"]["baseline"])
            recs.append((rec, path.parent))
        except (OSError, ValueError, KeyError, TypeError) as e:
            problems.append(f"{path.parent.relative_to(run)}: case.json unreadable or incomplete "
                            f"({type(e).__name__}); not shown")
    return sorted(recs, key=lambda r: -r[0]["score"]), problems


def _unlisted(run: Path, recs: list[tuple[dict, Path]]) -> list[str]:
    """A line for each case scores.csv lists that has no readable case folder."""
    try:
        with open(run / "scores.csv", newline="", encoding="utf-8") as f:
            listed = [row["case_id"] for row in csv.DictReader(f)]
    except (OSError, KeyError, csv.Error):
        return ["scores.csv missing or unreadable: cannot check that every scored case is shown"]
    found = {r["case_id"] for r, _ in recs}
    return [f"case {cid}: listed in scores.csv but its case folder is missing or incomplete; not shown"
            for cid in listed if cid not in found]


def _worklist(recs: list[tuple[dict, Path]], settings: dict, min_healthy: int) -> str:
    feats = "features" in run_map_names(settings)
    rows = []
    for rank, (r, _) in enumerate(recs, 1):
        f = r["scores"].get("features") if feats else None
        rows.append(f'<tr class="worklist-row" data-rank="{rank}" data-score="{r["score"]:.6g}">'
                    f'<td>{rank}</td><td><a href="#case-{rank}">{esc(r["case_id"])}</a></td><td>{r["score"]:.4g}</td>'
                    f'<td>{esc(percentile_text(r, settings, min_healthy))}</td>'
                    + (f'<td>{"n/a" if f is None else f"{f:.4g}"}</td>' if feats else "")
                    + f'<td>{r["scores"]["baseline"]:.4g}</td><td>{r.get("binary_voxels", "")}</td></tr>')
    return ("<table id='worklist'><tr><th>rank</th><th>case</th><th>score</th><th>healthy percentile</th>"
            + (f"<th>{MAP_LABELS['features']} score</th>" if feats else "")
            + "<th>baseline score</th><th>flagged voxels</th></tr>" + "".join(rows) + "</table>")


def _evaluation(eval_dir: Path | None) -> str:
    if eval_dir is None or not (eval_dir / "evaluation.json").is_file():
        return "<p>No evaluation against lesion masks was run for these scans.</p>"
    data = json.loads((eval_dir / "evaluation.json").read_text(encoding="utf-8"))
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
        body += f"<tr><td>{esc(label)}</td>{cells}</tr>"
    curves = _img(eval_dir / "curves.png", "ROC and PR curves") if (eval_dir / "curves.png").is_file() else ""
    notes = data.get("notes") or ["Brackets: bootstrap 95% intervals over cases. The ORACLE Dice is tuned on "
                                  "these very scans: an upper bound, not a result."]
    notes_html = "".join(f"<p class='note'>{esc(n)}</p>" for n in notes)
    return (f"<p>{data['cases']} cases.</p>{notes_html}<table id='results'>{head}{body}</table>{curves}")


def _threshold(settings: dict) -> tuple[float | None, str]:
    cal = settings.get("calibration")
    if not cal:
        return None, "not calibrated: overlay above the map's 99th percentile"
    fpr = cal["binary_fpr"]
    return cal["thresholds"]["model"][f"{fpr:g}"], f"calibrated threshold (healthy voxel FPR {fpr:g})"


def _viewer(rank: int, preview: dict, acq: dict | None, findings: list, thr: float | None) -> str:
    if acq is None or "preview_affine" not in acq:
        return "<p>No interactive viewer: this case was scored before acquisition.json was written.</p>"
    data = case_data(preview, np.asarray(acq["preview_affine"], float), thr, [f.ras for f in findings[:VIEWER_REGIONS]])
    return case_viewer(rank, data)


def _case(rank: int, rec: dict, folder: Path, settings: dict, images: Path, reference: list[dict],
          min_healthy: int, viewer: bool) -> str:
    """One case's section (raises OSError/ValueError/KeyError when its files are missing or broken)."""
    acq = read_acquisition(folder)
    preview = dict(np.load(folder / "preview.npz"))
    findings, total, points = case_points(folder, acq, preview)
    thr, thr_label = _threshold(settings)
    png, _, _ = save_montage(preview, images / f"case_{rank:03d}.png", thr,
                             f"#{rank}  {rec['case_id']}  score {rec['score']:.4g}", points or None,
                             map_unit(settings, acq, rec), thr_label)
    max_ratio = float(((settings.get("config") or {}).get("score") or {}).get("max_spacing_ratio", 2.0))
    flags = protocol_flags(acq, reference, max_ratio)
    lines = "".join(f"<p class='acq'>{esc(line)}</p>" for line in acquisition_lines(acq))
    lines += "".join(f"<p class='acq flag'>protocol differs: {esc(f)}</p>" for f in flags)
    if not reference:
        lines += "<p class='acq'>protocol check: no healthy reference scans given to the report (--healthy)</p>"
    where = ("" if points else "<p>views through the map's hotspot (no region located on the preview grid)</p>")
    return (f'<div class="case" id="case-{rank}"><h3>#{rank} {esc(rec["case_id"])}</h3>{lines}'
            f"<p class='acq'>healthy percentile: {esc(percentile_text(rec, settings, min_healthy))}</p>"
            f'{_img(png, "montage " + rec["case_id"])}{where}<p>{LEGEND}</p>'
            f"<h4>Findings (sorted by peak score)</h4>{findings_table(findings, total)}"
            f"{_viewer(rank, preview, acq, findings, thr) if viewer else ''}</div>")


def _why(e: Exception) -> str:
    """The cause in a line, naming a file by its name only (no folder paths in the report)."""
    name = getattr(e, "filename", None)
    if isinstance(e, OSError) and name:
        return f"{type(e).__name__}: {e.strerror or 'unreadable'}: {Path(str(name)).name}"
    return f"{type(e).__name__}: {e}"


def _reference(healthy_runs: list[Path]) -> list[dict]:
    found = []
    for run in healthy_runs:
        for path in sorted((Path(run) / "cases").rglob("acquisition.json")):
            if _unfinished(path, Path(run) / "cases"):
                continue
            acq = read_acquisition(path.parent)
            if acq is not None:
                found.append(acq)
    return found


def _stamp(run: Path, settings: dict) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    scored = datetime.datetime.fromtimestamp((run / "settings.json").stat().st_mtime, datetime.timezone.utc)
    return (f"<p id='version'>medmae {esc(__version__)}; report written {now}; scores written "
            f"{scored:%Y-%m-%d %H:%M UTC} by medmae {esc(settings.get('medmae_version', '?'))}; model "
            f"{esc(settings['model']['digest'])}, settings {esc(settings['settings_digest'])}</p>")


def write_report(run: str | Path, out: str | Path, eval_dir: str | Path | None = None,
                 healthy_runs: list[str | Path] = (), min_healthy: int | None = None, viewer: bool = True) -> Path:
    """Report on a ``score`` output folder (plus an ``evaluate`` folder) -> ``out`` (HTML);
    the montage PNGs are also kept in ``<out folder>/report_images/``, and the viewer's script
    is written beside ``out`` as niivue.js. ``healthy_runs``: score folders of healthy scans,
    the reference of the protocol check. ``min_healthy``: None = the run's
    calibration.min_healthy (MIN_HEALTHY for runs that do not record it)."""
    run, out = Path(run), Path(out)
    settings = read_settings(run)
    if min_healthy is None:
        min_healthy = int(((settings.get("config") or {}).get("calibration") or {}).get("min_healthy") or MIN_HEALTHY)
    recs, problems = _records(run)
    problems += _unlisted(run, recs)
    reference = _reference([Path(h) for h in healthy_runs])
    cases = []
    for rank, (r, folder) in enumerate(recs, 1):
        try:
            cases.append(_case(rank, r, folder, settings, out.parent / "report_images", reference, min_healthy,
                               viewer))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            problems.append(f"case {r['case_id']} (#{rank}): its outputs cannot be shown ({_why(e)})")
    scripts = f"<script src='{write_script(out.parent)}'></script>{VIEWER_JS}" if viewer and recs else ""
    warn = "".join(f'<p class="warn">{esc(w)}</p>' for w in settings.get("warnings", []))
    missing = "".join(f'<p class="missing">{esc(m)}</p>' for m in problems)
    shown = {k: settings.get(k) for k in ("model", "settings_digest", "score_statistic", "calibration", "config")}
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>medmae anomaly report</title>"
            f"<style>{STYLE}</style></head><body><h1>Anomaly report</h1>"
            "<p>Research tool, not a diagnostic device. Maps show where the model's reconstruction differs "
            f"from the scan; they are not findings.</p>{_stamp(run, settings)}<p id='convention'>{CONVENTION}</p>"
            f"{warn}{missing}<h2>Worklist</h2><p>Ranked by case score ({esc(settings['score_statistic'])}).</p>"
            f"{_worklist(recs, settings, min_healthy)}<h2>Evaluation</h2>"
            f"{_evaluation(Path(eval_dir) if eval_dir else None)}<h2>Cases</h2>{''.join(cases)}"
            f"<details id='settings'><summary>Settings (raw JSON)</summary><pre>{esc(json.dumps(shown, indent=1))}"
            f"</pre></details>{scripts}</body></html>")
    return atomic_write_text(out, page)
