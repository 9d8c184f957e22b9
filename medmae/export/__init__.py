"""medmae.export: write a pretrained encoder to disk and load it into downstream networks."""

from medmae.export.files import ExportError, export_encoder, read_export
from medmae.export.load import load_encoder, load_into_monai_vit, load_into_unetr, unetr_compatible, unetr_kwargs
from medmae.export.report import LoadError, LoadReport
from medmae.export.verify import Verification, verify_export

__all__ = [
    "ExportError", "LoadError", "LoadReport", "Verification", "export_encoder", "load_encoder",
    "load_into_monai_vit", "load_into_unetr", "read_export", "unetr_compatible", "unetr_kwargs", "verify_export",
]
