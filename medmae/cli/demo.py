"""`medmae demo`: the CPU pretraining demo, end to end, on the embedded defaults."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="run the CPU demo end to end",
        description="Generate phantoms, ingest them with the real scans shipped in tests/data, "
                    "preprocess into a cache, pretrain a tiny 3D MAE on the CPU for a few minutes "
                    "with an MLflow run in the local store, then print where the figures are.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", default="demo_out", help="output folder")
    p.add_argument("--steps", type=int, default=None, help="pretraining steps (default: medmae.demo.DEMO_STEPS, 3000)")
    p.add_argument("--phantoms", type=int, default=4, help="phantoms of each kind (brain, abdomen)")
    p.add_argument("--real-dir", default=None, help="folder of real scans (default: the repo's tests/data)")
    p.add_argument("--seed", type=int, default=0, help="seed of the phantoms and of training")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="pretraining config overrides, e.g. masking.strategy=anatomy")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medmae.demo import run_demo
    from medmae.tracking.mlflow_run import ui_command

    steps = {} if args.steps is None else {"steps": args.steps}
    r = run_demo(args.out, **steps, n_phantoms=args.phantoms, real_dir=args.real_dir,
                 seed=args.seed, overrides=args.overrides)
    print("\nmedmae demo finished")
    print(f"  cases           {r.n_cases} in {r.manifest} ({r.n_bad} bad, skipped)")
    print(f"  cache           {r.cache}")
    print(f"  masked-token loss {r.first_loss:.4f} (steps {r.first_steps[0]}-{r.first_steps[1]}) -> "
          f"{r.final_loss:.4f} (steps {r.final_steps[0]}-{r.final_steps[1]}; predict-the-mean baseline "
          f"{r.baseline:.4f}): means over the first and last progress lines' steps")
    print(f"  hidden-token r  {r.correlation:.2f} (reconstruction vs truth on hidden voxels, same steps; "
          "0 = predict-the-mean)")
    print(f"  run folder      {r.run_dir}")
    if r.figures_dir:
        print(f"  figures         {r.figures_dir}")
    if r.tracking_uri:
        print(f"  MLflow run      {r.run_id} in {r.tracking_uri}")
        hint = ui_command(r.tracking_uri, r.experiment_id, r.run_id)
        print(f"  open the UI     {hint}" + ("" if hint.startswith("http") else "   then browse http://127.0.0.1:5000"))
    return 0
