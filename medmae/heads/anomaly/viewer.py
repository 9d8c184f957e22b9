"""The report's interactive slice viewer: NiiVue, offline, with the case's volumes embedded.

NiiVue (BSD-2, vendored gzip-compressed in ``static/``) is written once as ``niivue.js``
beside the report and loaded by a relative ``<script src>``: no network. Each case embeds
its preview volumes as gzip NIfTI in base64 (scan as uint8, the anomaly map as uint8 with
``scl_slope`` restoring its units, the binary map and reference lesion as uint8), on the
preview grid (the model's spacing, RAS) and strided to at most ``MAX_SIDE`` voxels a side.
A viewer opens on demand (one WebGL context at a time), in radiological convention, at the
first listed region; the overlays toggle, the map's threshold is a slider, and a button per
listed region moves the crosshair there.
"""

from __future__ import annotations

import base64
import gzip
import json
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np

from medmae.atomic import atomic_write

SCRIPT = "niivue.js"
MAX_SIDE = 160


def write_script(folder: Path) -> str:
    """Write NiiVue beside the report (once; same bytes every time); returns its relative name."""
    data = gzip.decompress(resources.files("medmae.heads.anomaly").joinpath("static/niivue.umd.js.gz").read_bytes())
    target = folder / SCRIPT
    if not target.is_file() or target.stat().st_size != len(data):
        atomic_write(target, lambda tmp: Path(tmp).write_bytes(data))
    return SCRIPT


def _nifti(array: np.ndarray, affine: np.ndarray, slope: float = 1.0) -> str:
    img = nib.Nifti1Image(np.asarray(array, np.uint8), affine)
    img.header.set_slope_inter(slope, 0.0)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return base64.b64encode(gzip.compress(img.to_bytes(), compresslevel=6)).decode()


def _to_uint8(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip(np.rint((a - lo) / max(hi - lo, 1e-6) * 255), 0, 255).astype(np.uint8)


def case_data(preview: dict, affine: np.ndarray, threshold: float | None, regions: list[tuple]) -> dict:
    """The JSON a case's viewer reads: base64 volumes, display range, threshold, regions (RAS mm)."""
    step = max(1, int(np.ceil(max(preview["image"].shape) / MAX_SIDE)))
    sl = (slice(None, None, step),) * 3
    aff = np.asarray(affine, float).copy()
    aff[:3, :3] *= step
    image, body = preview["image"].astype(np.float32)[sl], preview["body"][sl] > 0
    amap = preview["map_model"].astype(np.float32)[sl]
    lo, hi = np.percentile(image[body], [1, 99]) if body.any() else (float(image.min()), float(image.max()))
    top = float(amap[body].max()) if body.any() else float(amap.max())
    top = max(top, 1e-6)
    shown = threshold if threshold is not None else float(np.percentile(amap[body], 99)) if body.any() else 0.0
    data = {"image": _nifti(_to_uint8(image, lo, hi), aff), "map": _nifti(_to_uint8(amap, 0.0, top), aff, top / 255),
            "map_max": top, "threshold": float(shown), "calibrated": threshold is not None,
            "regions": [[round(float(v), 1) for v in r] for r in regions]}
    for key in ("binary", "label"):
        if preview.get(key) is not None:
            data[key] = _nifti((preview[key][sl] > 0).astype(np.uint8), aff)
    return data


def case_viewer(rank: int, data: dict) -> str:
    """The viewer block of one case: its data and controls (the canvas is made on opening)."""
    n = rank
    boxes = [("map", "anomaly map", True)] + [(k, t, True) for k, t in (("binary", "binary map"),
                                                                       ("label", "reference lesion")) if k in data]
    toggles = "".join(f"<label><input type='checkbox' class='nv-toggle' data-layer='{k}' checked> {t}</label> "
                      for k, t, _ in boxes)
    regions = "".join(f"<button type='button' class='nv-goto' data-region='{i}'>region {i + 1}</button> "
                      for i in range(len(data["regions"])))
    step = data["map_max"] / 200
    payload = json.dumps(data).replace("</", "<\\/")  # raw text inside <script>: no entity decoding
    return (f"<div class='viewer' id='viewer-{n}' data-case='{n}'><button type='button' class='nv-open' "
            f"onclick='medmaeOpen({n})'>Open the interactive viewer</button><div class='nv-controls' hidden>"
            f"{toggles}<label>map threshold <input type='range' class='nv-threshold' min='0' max='{data['map_max']:.6g}'"
            f" step='{step:.6g}' value='{data['threshold']:.6g}'> <output>{data['threshold']:.4g}</output></label> "
            f"{regions}</div><div class='nv-canvas' style='width:100%;height:520px' hidden></div>"
            f"<script type='application/json' class='nv-data'>{payload}</script></div>")


VIEWER_JS = """<script>
var medmaeViewer = null;
function medmaeClose() {
  if (!medmaeViewer) return;
  var host = medmaeViewer.host;
  host.querySelector('.nv-canvas').innerHTML = ''; host.querySelector('.nv-canvas').hidden = true;
  host.querySelector('.nv-controls').hidden = true; host.dataset.ready = '';
  medmaeViewer = null;
}
async function medmaeOpen(n) {
  var host = document.getElementById('viewer-' + n);
  if (medmaeViewer && medmaeViewer.host === host) return;
  medmaeClose();
  var data = JSON.parse(host.querySelector('.nv-data').textContent);
  var box = host.querySelector('.nv-canvas'); box.hidden = false; host.querySelector('.nv-controls').hidden = false;
  var canvas = document.createElement('canvas'); box.appendChild(canvas);
  var nv = new niivue.Niivue({isRadiologicalConvention: true, backColor: [0, 0, 0, 1], show3Dcrosshair: false,
                              isColorbar: true, crosshairColor: [0.2, 1, 0.2, 1], multiplanarForceRender: true});
  medmaeViewer = {host: host, nv: nv, layers: {}};
  await nv.attachToCanvas(canvas);
  var vols = [{url: 'data:application/gzip;base64,' + data.image, name: 'scan.nii.gz', colormap: 'gray'},
              {url: 'data:application/gzip;base64,' + data.map, name: 'map.nii.gz', colormap: 'warm',
               cal_min: data.threshold, cal_max: data.map_max, opacity: 0.7}];
  var order = ['scan', 'map'];
  [['binary', 'blue'], ['label', 'green']].forEach(function (kv) {
    if (data[kv[0]]) { vols.push({url: 'data:application/gzip;base64,' + data[kv[0]], name: kv[0] + '.nii.gz',
                                  colormap: kv[1], cal_min: 0.5, cal_max: 1, opacity: 0.45}); order.push(kv[0]); }
  });
  await nv.loadVolumes(vols);
  order.forEach(function (k, i) { medmaeViewer.layers[k] = i; });
  nv.setSliceType(nv.sliceTypeMultiplanar);
  if (data.regions.length) medmaeGoto(0);
  host.dataset.ready = '1';
}
function medmaeGoto(i) {
  var v = medmaeViewer, r = JSON.parse(v.host.querySelector('.nv-data').textContent).regions[i];
  v.nv.scene.crosshairPos = v.nv.mm2frac(r); v.nv.updateGLVolume();
  v.host.dataset.region = String(i);
}
document.addEventListener('change', function (e) {
  var t = e.target; if (!medmaeViewer || !medmaeViewer.host.contains(t)) return;
  var v = medmaeViewer;
  if (t.classList.contains('nv-toggle')) {
    v.nv.setOpacity(v.layers[t.dataset.layer], t.checked ? (t.dataset.layer === 'map' ? 0.7 : 0.45) : 0);
  }
});
document.addEventListener('input', function (e) {
  var t = e.target; if (!medmaeViewer || !t.classList.contains('nv-threshold')) return;
  var vol = medmaeViewer.nv.volumes[medmaeViewer.layers.map];
  vol.cal_min = parseFloat(t.value); medmaeViewer.nv.updateGLVolume();
  t.nextElementSibling.textContent = parseFloat(t.value).toPrecision(4);
});
document.addEventListener('click', function (e) {
  var t = e.target; if (t.classList.contains('nv-goto') && medmaeViewer && medmaeViewer.host.contains(t)) {
    medmaeGoto(parseInt(t.dataset.region, 10)); }
});
</script>"""
