"""Scan ingestion: NIfTI, NRRD/MHA/MHD and DICOM series into :class:`Volume` objects."""

from medmae.io.errors import ScanError
from medmae.io.read import read_volume
from medmae.io.volume import Volume

__all__ = ["ScanError", "Volume", "read_volume"]
