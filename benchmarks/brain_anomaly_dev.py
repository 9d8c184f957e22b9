"""Issue 20's measurements on the development brains: maps, false alarms, reconstruction quality.

Each case is scored ONCE (the MAE's error statistics); every variant below only changes what
is derived from them (medmae.heads.anomaly.case.derive_maps), so variants are compared on the
same reconstructions. Per set (gliomas, inserted lesions) and variant, pooled over the set's
voxels inside the brain mask, on the model's 1.5 mm grid:

  AUROC, AUPRC        voxel-wise (scikit-learn)
  oracle Dice         the best Dice over thresholds of the pooled map (ORACLE: tuned on the
                      evaluated voxels; an upper bound, not a result)
  hotspot             cases whose first hotspot region (findings.hotspots) touches the lesion
  rim, csf            mean share of the top 1 % body voxels within 3 mm of the edge or in CSF
                      (falsealarm.false_alarm_shares; CSF estimated per case, lesion excluded)

and per case, the reconstruction: mean squared error and Pearson r between the scan and the
expected value over covered brain voxels (each voxel's expectation comes only from draws that
hid it: hidden-token quality on whole held-out or training scans).

    python benchmarks/brain_anomaly_dev.py --model RUN --lesions lesions.csv [--healthy healthy.csv]
        [--variant NAME KEY=VALUE ...] --out results.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from medmae.atomic import atomic_write_text
from medmae.heads.anomaly.case import analyse_case, derive_maps, normalise_map, scored_voxels
from medmae.heads.anomaly.config import AnomalyConfig
from medmae.heads.anomaly.falsealarm import csf_mask, false_alarm_shares
from medmae.heads.anomaly.features import bank_features, feature_map
from medmae.heads.anomaly.findings import hotspots
from medmae.heads.anomaly.maps import combined_map
from medmae.heads.anomaly.metrics import voxel_auc
from medmae.heads.anomaly.run import open_model
from medmae.io.manifest import read_manifest

DEFAULT_VARIANTS = {
    "plain": [],
    "rim3": ["score.rim_mm=3"],
    "edge": ["score.normalise=edge"],
    "edge+geometric": ["score.normalise=edge", "score.combine=geometric"],
}


def oracle_dice(labels: np.ndarray, scores: np.ndarray) -> float:
    """max over thresholds of 2TP / (P + predicted) for bool labels (ties: all or none)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    last = np.r_[s[1:] != s[:-1], True]  # end of each run of tied scores
    n = np.arange(1, s.size + 1)
    d = 2.0 * tp[last] / (y.sum() + n[last])
    return float(d.max()) if y.any() else float("nan")


def score_cases(model_path: str, manifests: list[Path], base: AnomalyConfig) -> tuple[object, list]:
    model, _ = open_model(model_path)
    out = []
    for m in manifests:
        for case in read_manifest(m):
            t = time.perf_counter()
            cm = analyse_case(case, model, base)
            print(f"scored {case.case_id} in {time.perf_counter() - t:.1f} s", flush=True)
            out.append(cm)
    return model, out


def recon_quality(cm) -> dict:
    sel = cm.body & cm.stats.covered
    x, e = cm.image[0][sel], cm.stats.expected[0][sel]
    return {"mse": float(((x - e) ** 2).mean()), "r": float(np.corrcoef(x, e)[0, 1])}


def _floors(cm) -> list[float]:
    return [p["floor"] for p in cm.meta["normalisation"]]


def feature_maps(model, cases: list, healthy: list) -> dict[str, np.ndarray]:
    """case id -> feature-space map (features.feature_map), bank from the healthy cases."""
    if not healthy:
        return {}
    t = time.perf_counter()
    bank = bank_features([(cm.image, cm.body, _floors(cm)) for cm in healthy], model)
    out = {cm.case.case_id: feature_map(cm.image, cm.body, _floors(cm), model, bank) for cm in cases}
    print(f"feature maps ({bank.tokens.shape[0]} bank tokens) in {time.perf_counter() - t:.1f} s", flush=True)
    return out


def evaluate(model, cases: list, variants: dict[str, list[str]], feats: dict[str, np.ndarray] | None = None) -> dict:
    spacing = tuple(model.preprocess.spacing)
    feats = feats or {}
    res = {"recon": {cm.case.case_id: recon_quality(cm) for cm in cases}, "sets": {}}
    lesion_cases = [cm for cm in cases if cm.label is not None and (cm.label > 0).any()]
    sets = {"glioma": [c for c in lesion_cases if c.case.case_id.startswith("glioma")],
            "inserted": [c for c in lesion_cases if not c.case.case_id.startswith("glioma")]}
    sets = {k: v for k, v in sets.items() if v}  # the FLAIR check has gliomas only
    for vname, overrides in variants.items():
        cfg = AnomalyConfig.model_validate(_nested(overrides))
        for sname, group in sets.items():
            names = ["model", "baseline", "combined"] + (["features", "features_x_baseline"] if feats else [])
            pooled = {k: ([], []) for k in names}
            hot = {k: 0 for k in pooled}
            fa = {k: [] for k in pooled}
            for cm in group:
                maps = derive_maps(cm.stats, cm.image, cm.body, cm.contrast, cfg, spacing)
                if cm.case.case_id in feats:
                    f = feats[cm.case.case_id]
                    f = normalise_map(f, cm.body, cfg, spacing)
                    keep = scored_voxels(cm.image, cm.body, cm.contrast, cfg, spacing)
                    f = f if keep is None else np.where(keep, f, 0.0)
                    maps["features"] = f
                    maps["features_x_baseline"] = combined_map(f, maps["baseline"], cm.body, "geometric")
                lab = cm.label > 0
                csf = csf_mask(cm.image[0], cm.body, cm.case.sequences[0], cm.label)
                for k, m in maps.items():
                    pooled[k][0].append(lab[cm.body])
                    pooled[k][1].append(m[cm.body])
                    regions = hotspots(m, cm.body, np.diag([*spacing, 1.0]))
                    hot[k] += bool(regions and (regions[0] & lab).any())
                    fa[k].append(false_alarm_shares(m, cm.body, spacing, csf))
            for k, (ys, ss) in pooled.items():
                y, s = np.concatenate(ys), np.concatenate(ss).astype(np.float64)
                auroc, auprc = voxel_auc(y, s)
                res["sets"].setdefault(sname, {}).setdefault(vname, {})[k] = {
                    "auroc": auroc, "auprc": auprc, "oracle_dice": oracle_dice(y, s),
                    "hotspot_on_lesion": f"{hot[k]}/{len(group)}", **{f"top1_{r}": float(np.mean([f[r] for f in fa[k]])) for r in ("rim", "csf", "rim_or_csf")}}
    return res


def _nested(overrides: list[str]) -> dict:
    out: dict = {}
    for o in overrides:
        key, value = o.split("=", 1)
        *path, leaf = key.split(".")
        d = out
        for p in path:
            d = d.setdefault(p, {})
        d[leaf] = json.loads(value) if value[:1] in "0123456789[-" else value
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--lesions", type=Path, required=True)
    p.add_argument("--healthy", type=Path, nargs="*", default=[])
    p.add_argument("--variant", nargs="+", action="append", metavar=("NAME", "KEY=VALUE"),
                   help="a named variant of score settings (default: plain, rim3, edge, edge+geometric)")
    p.add_argument("--base", nargs="*", default=[], help="score settings every variant starts from")
    p.add_argument("--features", action="store_true", help="also the feature-space map, bank from --healthy")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    variants = {v[0]: v[1:] for v in a.variant} if a.variant else DEFAULT_VARIANTS
    variants = {k: [*a.base, *v] for k, v in variants.items()}
    model, cases = score_cases(a.model, [a.lesions], AnomalyConfig.model_validate(_nested(a.base)))
    _, healthy = score_cases(a.model, a.healthy, AnomalyConfig.model_validate(_nested(a.base)))
    feats = feature_maps(model, cases, healthy) if a.features else {}
    res = evaluate(model, cases + healthy, variants, feats)
    atomic_write_text(a.out, json.dumps(res, indent=1) + "\n")
    for sname, vs in res["sets"].items():
        for vname, maps in vs.items():
            for k, m in maps.items():
                print(f"{sname:9s} {vname:16s} {k:9s} AUROC {m['auroc']:.3f} AUPRC {m['auprc']:.3f} "
                      f"Dice* {m['oracle_dice']:.3f} hot {m['hotspot_on_lesion']} rim {m['top1_rim']:.2f} csf {m['top1_csf']:.2f}")
    for cid, q in res["recon"].items():
        print(f"recon {cid:22s} mse {q['mse']:.3f} r {q['r']:.3f}")


if __name__ == "__main__":
    main()
