"""A MONAI bundle of an exported encoder: ``DIR/monai_bundle/{configs/metadata.json,
configs/inference.json, models/model.pt}``.

The network is MONAI's own ``monai.networks.nets.ViT`` (patch embedding, the transformer
blocks and final norm of our encoder, position embedding as trained), so
``monai.bundle.ConfigParser`` builds it from ``inference.json`` and loads ``model.pt``
without medmae installed. Written only for encoders MONAI's ViT computes exactly: not for
those that normalise each crop's input inside the encoder (``model.input_norm``, the CPU
demo recipe), which load into medmae's heads only (:func:`bundle_refusal`). An encoder with
patch 16 and 12 layers also fits MONAI's UNETR (``unetr_compatible``); the metadata says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from medmae import __version__
from medmae.atomic import atomic_write, atomic_write_text
from medmae.export.files import read_export
from medmae.export.load import monai_vit_from_export, unetr_compatible
from medmae.export.report import LoadReport

BUNDLE = "monai_bundle"


def bundle_refusal(meta: dict) -> str | None:
    """None when MONAI's ViT computes this encoder exactly, else why not."""
    if meta["architecture"].get("input_norm"):
        return ("the encoder normalises each crop's input (model.input_norm), which MONAI's ViT does not: "
                "it loads into medmae's heads only")
    return None


def network_def(meta: dict) -> dict:
    """The ``network_def`` of inference.json: MONAI ViT arguments matching the export."""
    a = meta["architecture"]
    return {"_target_": "monai.networks.nets.ViT", "in_channels": a["in_channels"], "img_size": list(meta["crop_size"]),
            "patch_size": list(a["patch_size"]), "hidden_size": a["embed_dim"],
            "mlp_dim": int(a["embed_dim"] * a["mlp_ratio"]), "num_layers": a["depth"], "num_heads": a["num_heads"],
            "proj_type": "conv", "qkv_bias": a["qkv_bias"], "classification": False, "spatial_dims": 3}


def inference_config(meta: dict) -> dict:
    """inference.json: the network, and the expression that loads models/model.pt into it."""
    return {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "network_def": network_def(meta),
        "network": "$@network_def.to(@device)",
        "checkpoint": "$@bundle_root + '/models/model.pt'",
        "load_weights": "$@network.load_state_dict(torch.load(@checkpoint, map_location=@device, weights_only=True))",
        "initialize": ["$@load_weights"],
    }


def bundle_metadata(meta: dict) -> dict:
    """metadata.json: versions, what the network takes and gives, and where it came from."""
    import monai

    a = meta["architecture"]
    crop = list(meta["crop_size"])
    unetr = unetr_compatible(meta)
    return {
        "version": "0.1.0", "changelog": {"0.1.0": f"exported by medmae {__version__}"},
        "monai_version": monai.__version__, "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": __import__("numpy").__version__,
        "name": "medmae pretrained 3D MAE encoder (ViT)",
        "task": "self-supervised pretrained encoder: patch-token features for downstream heads",
        "description": (f"ViT encoder ({a['embed_dim']} wide, {a['depth']} layers, patch {a['patch_size']}) pretrained "
                        f"as a masked autoencoder by medmae from step {meta['source']['step']} of "
                        f"{meta['source']['checkpoint']}. "
                        + ("Fits monai.networks.nets.UNETR (load it into UNETR.vit)." if unetr is None else
                           f"Not a UNETR encoder: {unetr}.")),
        "authors": "medmae", "copyright": "see the training data's licences",
        "intended_use": "feature extraction and fine-tuning; not a diagnostic device",
        "medmae": {"preprocess": {"spacing": meta.get("spacing"), "normalisation": meta.get("normalisation")},
                   "unetr_compatible": unetr is None, "source": meta["source"]},
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "num_channels": a["in_channels"],
                                 "spatial_shape": crop, "dtype": "float32", "value_range": [],
                                 "is_patch_data": True, "channel_def": {str(i): f"channel {i}"
                                                                        for i in range(a["in_channels"])}}},
            "outputs": {"pred": {"type": "tokens", "format": "features", "num_channels": a["embed_dim"],
                                 "spatial_shape": [int(n) for n in a["grid"]], "dtype": "float32",
                                 "value_range": [], "is_patch_data": True, "channel_def": {}}},
        },
    }


def write_bundle(export_dir: str | os.PathLike) -> tuple[Path, LoadReport]:
    """``export_dir/monai_bundle/``; returns (its folder, the load report into MONAI's ViT).

    Raises ValueError (with :func:`bundle_refusal`'s reason) for an encoder MONAI cannot compute.
    """
    from monai.networks.nets import ViT

    state, meta = read_export(export_dir)
    why = bundle_refusal(meta)
    if why:
        raise ValueError(f"{export_dir}: no MONAI bundle: {why}")
    args = {k: v for k, v in network_def(meta).items() if k != "_target_"}
    vit = ViT(**args)
    report = monai_vit_from_export(vit, state, meta, _grid(meta), target_name="MONAI ViT (bundle)")
    out = Path(export_dir) / BUNDLE
    weights = {k: v.detach().cpu().contiguous() for k, v in vit.state_dict().items()}
    atomic_write(out / "models" / "model.pt", lambda tmp: torch.save(weights, tmp))
    atomic_write_text(out / "configs" / "inference.json", json.dumps(inference_config(meta), indent=2) + "\n")
    atomic_write_text(out / "configs" / "metadata.json", json.dumps(bundle_metadata(meta), indent=2) + "\n")
    return out, report


def _grid(meta: dict) -> tuple[int, ...]:
    return tuple(int(c) // int(p) for c, p in zip(meta["crop_size"], meta["architecture"]["patch_size"]))
