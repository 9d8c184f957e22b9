"""Anomaly detection with a pretrained MAE: maps, healthy calibration, evaluation, report.

See docs/anomaly.md. Modules: config (settings; the model is loaded by medmae.export.pretrained),
compat (does a scan fit the model), draws (test-time masks), window (the per-window
predictor), scorer (sliding windows -> error statistics), maps (anomaly map, intensity
baseline, case score, depth normalisation), features (feature-space map from the encoder,
PatchCore-style), falsealarm (top-voxel shares on the mask rim and in CSF), contrast (map side by
sequence), case (one case end to end), identity (a scan's image sha256),
calibration, outputs (files on the source grid), grid (the model-grid arrays score
thresholds), run (batch score / calibrate), scored (read a score folder back), metrics,
counts (per-case counts at the calibrated threshold), evaluate, results, report.
"""
