"""medmae: self-supervised masked autoencoders for 3D medical scans, built on MONAI."""

__version__ = "0.1.0"
