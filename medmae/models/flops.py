"""Analytic FLOP counts of the MAE (for model-FLOPs-utilisation figures).

Counts multiply-adds of matmuls and convolutions as 2 FLOPs; layer norms, softmax and
element-wise ops are left out (as is usual for MFU). A training step costs 3x the forward (the backward computes
gradients for both inputs and weights) except for the patch embedding, whose input is the
image: its backward computes weight gradients only (2x its forward in all, not 3x).
``tests/models/test_model_sizes.py`` checks these counts against torch's FlopCounterMode.
"""

from __future__ import annotations

from medmae.models.mae import MaskedAutoencoder3D


def block_flops(tokens: int, width: int, mlp_width: int) -> float:
    """Forward FLOPs of one transformer block over ``tokens`` tokens (one sample)."""
    projections = 2 * tokens * (4 * width * width + 2 * width * mlp_width)  # qkv, out, 2 MLP
    attention = 4 * tokens * tokens * width  # q k^T and attn @ v
    return float(projections + attention)


def patch_embed_flops(model: MaskedAutoencoder3D) -> float:
    """Forward FLOPs of the patch embedding for one sample (every token, masked or not)."""
    return 2.0 * model.num_tokens * model.patch_dim * model.encoder.embed_dim


def mae_forward_flops(model: MaskedAutoencoder3D, visible: int, decoded: int | None = None) -> float:
    """Forward FLOPs for one sample with ``visible`` encoder tokens and ``decoded`` decoder tokens (default all)."""
    n = model.num_tokens
    decoded = n if decoded is None else decoded
    enc, dec = model.encoder, model.decoder
    enc_mlp = enc.blocks[0].mlp.linear1.out_features
    dec_width, dec_mlp = dec.embed.out_features, dec.blocks[0].mlp.linear1.out_features
    flops = patch_embed_flops(model)  # runs on every token
    flops += len(enc.blocks) * block_flops(visible, enc.embed_dim, enc_mlp)
    flops += 2.0 * visible * enc.embed_dim * dec_width  # decoder embed
    flops += len(dec.blocks) * block_flops(decoded, dec_width, dec_mlp)
    flops += 2.0 * decoded * dec_width * model.patch_dim  # voxel prediction
    return flops


def mae_train_step_flops(model: MaskedAutoencoder3D, batch: int, mask_ratio: float) -> float:
    """FLOPs of forward + backward for a batch, every token valid, ``round(ratio * N)`` hidden."""
    visible = model.num_tokens - round(mask_ratio * model.num_tokens)
    return batch * train_flops(model, visible)


def train_flops(model: MaskedAutoencoder3D, visible: int, decoded: int | None = None) -> float:
    """Forward + backward FLOPs for one sample (see :func:`mae_forward_flops`): 3x the forward,
    less the backward of the patch embedding's input, which needs no gradient."""
    return 3.0 * mae_forward_flops(model, visible, decoded) - patch_embed_flops(model)
