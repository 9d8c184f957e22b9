"""`medmae export CHECKPOINT --out DIR`: write the pretrained encoder for downstream use.

Writes DIR/encoder.pt (encoder state_dict), DIR/mae.pt (the whole MAE, for the anomaly
head) and DIR/encoder.json (architecture, crop size, preprocessing, version, source step), then checks the export: it reloads it strictly and,
when MONAI's UNETR can hold it (patch 16, 12 layers), loads it into a UNETR and compares
the ViT's hidden states with ours. Both load reports are printed. DIR/monai_bundle/ is a
MONAI bundle of the encoder (MONAI's ViT) when MONAI computes it exactly. See docs/model.md.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a pretrained encoder for downstream networks",
        description="Extract the encoder of a pretraining checkpoint into DIR/encoder.pt + DIR/encoder.json, "
                    "then verify it loads into medmae's ViTEncoder3D and MONAI's UNETR (key report printed).")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="training checkpoint (e.g. runs/pretrain/checkpoints/latest.pt)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="folder to write encoder.pt and encoder.json into")
    p.add_argument("--no-verify", action="store_true", help="skip the reload / UNETR check")
    p.add_argument("--no-bundle", action="store_true",
                   help="do not write DIR/monai_bundle/ (configs/metadata.json, configs/inference.json, "
                        "models/model.pt: MONAI's ViT with these weights), written by default for encoders MONAI "
                        "computes exactly (not model.input_norm ones, which load into medmae's heads only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medmae.export import ExportError, LoadError, export_encoder, verify_export
    from medmae.training.checkpoint import CheckpointError

    try:
        meta = export_encoder(args.checkpoint, args.out)
        a = meta["architecture"]
        print(f"wrote {args.out}/encoder.pt ({meta['weights']['parameters'] / 1e6:.2f} M parameters, "
              f"step {meta['source']['step']}) and encoder.json")
        print(f"  ViT {a['embed_dim']} wide, {a['depth']} layers, {a['num_heads']} heads, patch {tuple(a['patch_size'])}, "
              f"{a['in_channels']} channel(s), crop {tuple(meta['crop_size'])} -> grid {tuple(a['grid'])}")
        bundle_line = "" if args.no_bundle else _bundle(args.out, meta)
        if args.no_verify:
            if bundle_line:
                print(bundle_line)
            return 0
        v = verify_export(args.out)
    except (CheckpointError, ExportError, LoadError) as e:
        print(f"medmae export: error: {e}", file=sys.stderr)
        return 2
    if bundle_line:
        print(bundle_line)
    print(v.encoder.format())
    if v.unetr is None:
        print(f"UNETR check skipped: {v.skipped}")
    else:
        print(v.unetr.format())
        print(f"  UNETR ViT hidden states vs ours: max |diff| = {v.max_abs_diff:.2e}")
    return 0


def _bundle(out: str, meta: dict) -> str:
    """Write the MONAI bundle when MONAI can compute the encoder; the line that says what happened."""
    from medmae.export.bundle import bundle_refusal, write_bundle

    why = bundle_refusal(meta)
    if why:
        return f"no MONAI bundle: {why}"
    folder, report = write_bundle(out)
    return (f"MONAI bundle: {folder}/ (configs/inference.json builds monai.networks.nets.ViT and loads "
            f"models/model.pt; {len(report.loaded)} tensors loaded, {len(report.missing)} missing)")
