"""medmae.models: the 3D ViT masked autoencoder and its encoder."""

from medmae.models.build import build_encoder, build_mae
from medmae.models.config import ModelConfig
from medmae.models.encoder import ViTEncoder3D
from medmae.models.mae import MAEOutput, MaskedAutoencoder3D
from medmae.models.sizes import PRESETS, MAEDims, resolve_dims

__all__ = [
    "MAEDims", "MAEOutput", "MaskedAutoencoder3D", "ModelConfig", "PRESETS", "ViTEncoder3D",
    "build_encoder", "build_mae", "resolve_dims",
]
