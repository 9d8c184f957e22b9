"""`medmae study run FILE [--out DIR]`, `medmae study show NAME`, `medmae study list`."""

from __future__ import annotations

import argparse
import sys
import tempfile


def register(subparsers) -> None:
    p = subparsers.add_parser("study", help="run, show and list reproducible studies",
                              description="A study file (studies/NAME.yaml) names its data, pretraining "
                                          "variants and seeds; `run` executes it, reusing finished steps.")
    sub = p.add_subparsers(dest="study_command", metavar="SUBCOMMAND", required=True)
    r = sub.add_parser("run", help="run or resume a study")
    r.add_argument("study", help="study YAML file")
    r.add_argument("--out", "-o", default=None, help="output folder (default: the study's `out`)")
    r.add_argument("--tracking-uri", default=None, help="MLflow store (default: the study file's tracking_uri, "
                                                        "else $MLFLOW_TRACKING_URI or ./mlruns/mlflow.db)")
    r.set_defaults(func=run)
    s = sub.add_parser("show", help="print a study's summary table from MLflow",
                       description="Print the summary table of the study's latest finished run, read from "
                                   "its MLflow store: the one named by --tracking-uri, else by the study "
                                   "file (tracking_uri) or recorded in its output folder (mlflow_run.json), "
                                   "else $MLFLOW_TRACKING_URI or ./mlruns/mlflow.db.")
    s.add_argument("study", metavar="STUDY", help="study file, study output folder, or study name")
    s.add_argument("--tracking-uri", default=None, help="MLflow store to read (overrides the study's)")
    s.set_defaults(func=show)
    ls = sub.add_parser("list", help="list the studies in the MLflow store")
    ls.add_argument("--tracking-uri", default=None, help="MLflow store (default: $MLFLOW_TRACKING_URI "
                                                         "or ./mlruns/mlflow.db)")
    ls.set_defaults(func=list_studies)


def run(args: argparse.Namespace) -> int:
    from medmae.studies.runner import run_study
    from medmae.tracking.mlflow_run import ui_command

    res = run_study(args.study, args.out, args.tracking_uri)
    print(f"study {res.name}: {len(res.ran)} step(s) run, {len(res.reused)} reused -> {res.out}")
    print((res.out / "summary.md").read_text(encoding="utf-8"))
    print(f"summary table: {res.out / 'summary.csv'} and {res.out / 'summary.md'}; plots: {res.out / 'summary.png'}")
    for report in sorted((res.out / "steps").glob("anomaly-*/evaluation/report.html")):
        step = report.parents[1].name.rsplit("-", 1)[0].removeprefix("anomaly-")
        print(f"anomaly report ({step}): {report}")
    print(f"MLflow UI: {ui_command(res.tracking_uri)}")
    return 0


def show(args: argparse.Namespace) -> int:
    from medmae.studies.tracking import download_summary, find_study_runs, locate_study

    name, uri = locate_study(args.study, args.tracking_uri)
    runs = [r for r in find_study_runs(uri, name) if r.info.status == "FINISHED"]
    if not runs:
        print(f"medmae study show: no finished run of study {name!r} in {uri} (give the study file, its "
              "output folder, or --tracking-uri)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        print(download_summary(uri, runs[0].info.run_id, tmp).read_text(encoding="utf-8"), end="")
    return 0


def list_studies(args: argparse.Namespace) -> int:
    import time

    from medmae.studies.tracking import STUDY_TAG, find_study_runs
    from medmae.tracking.mlflow_run import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    latest: dict[str, object] = {}
    counts: dict[str, int] = {}
    for r in find_study_runs(uri):
        name = r.data.tags[STUDY_TAG]
        counts[name] = counts.get(name, 0) + 1
        latest.setdefault(name, r)
    if not latest:
        print(f"no studies in {uri}")
        return 0
    print(f"{'study':24s} {'runs':>4s}  {'last run':19s}  status")
    for name, r in sorted(latest.items()):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.info.start_time / 1000))
        print(f"{name:24s} {counts[name]:4d}  {when}  {r.info.status}")
    return 0
