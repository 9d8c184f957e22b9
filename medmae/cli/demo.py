"""`medmae demo`: the demo study (studies/demo.yaml), the same as `make demo` and
`medmae study run studies/demo.yaml`."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="run the demo study (studies/demo.yaml) on the CPU",
        description="Run the demo study of a clone of the repository: phantoms plus the real scans shipped "
                    "in tests/data, a tiny MAE pretrained with random and with anatomy-aware masking "
                    "(configs/pretrain_demo_cpu.yaml), then both heads (anomaly detection, organ "
                    "segmentation) and the summary table. The same as `make demo` and "
                    "`medmae study run studies/demo.yaml`; a second run reuses finished steps.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", "-o", default=None, help="output folder (default: the study's own, studies_out/demo)")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: $MLFLOW_TRACKING_URI "
                                                        "or ./mlruns/mlflow.db)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medmae.cli import study
    from medmae.demo import DEMO_STUDY, repo_file

    return study.run(argparse.Namespace(study=str(repo_file(DEMO_STUDY)), out=args.out,
                                        tracking_uri=args.tracking_uri))
