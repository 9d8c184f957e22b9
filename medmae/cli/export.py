"""`medmae export CHECKPOINT --out DIR`: write the pretrained encoder for downstream use.

Writes DIR/encoder.pt (encoder state_dict), DIR/mae.pt (the whole MAE, for the anomaly
head) and DIR/encoder.json (architecture, crop size, preprocessing, version, source step), then checks the export: it reloads it strictly and,
when MONAI's UNETR can hold it (patch 16, 12 layers), loads it into a UNETR and compares
the ViT's hidden states with ours. Both load reports are printed. See docs/model.md.
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
        if args.no_verify:
            return 0
        v = verify_export(args.out)
    except (CheckpointError, ExportError, LoadError) as e:
        print(f"medmae export: error: {e}", file=sys.stderr)
        return 2
    print(v.encoder.format())
    if v.unetr is None:
        print(f"UNETR check skipped: {v.skipped}")
    else:
        print(v.unetr.format())
        print(f"  UNETR ViT hidden states vs ours: max |diff| = {v.max_abs_diff:.2e}")
    return 0
