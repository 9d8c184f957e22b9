"""Anomaly detection with a pretrained MAE: maps, healthy calibration, evaluation, report.

See docs/anomaly.md. Modules: config (settings), model (load a run/checkpoint/export),
compat (does a scan fit the model), draws (test-time masks), window (the per-window
predictor), scorer (sliding windows -> error statistics), maps (anomaly map, intensity
baseline, case score), case (one case end to end), calibration, outputs (files on the
source grid), run (batch score / calibrate), metrics, evaluate, report.
"""
