"""Heads on the pretrained encoder: anomaly detection and segmentation, plus what both share
(turning user inputs into cases, preprocessing them exactly as the model's cache was)."""
