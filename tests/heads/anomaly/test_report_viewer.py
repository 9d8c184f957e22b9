"""The report's offline NiiVue viewer in headless Chromium: the canvas renders the scan, the anomaly
overlay toggles and its threshold moves, region buttons move the crosshair, and the page makes no
network request (Chromium's net log: no request initiated by the page)."""

import json
import re
import shutil
import subprocess

import pytest

from medmae.heads.anomaly.report import write_report
from report_helpers import brain_case, scored_run

CHECK = """<script>
window.addEventListener('load', async function () {
  var b = document.body;
  function grab(nv) { nv.drawScene(); var gl = nv.gl, w = gl.drawingBufferWidth, h = gl.drawingBufferHeight;
    var px = new Uint8Array(w * h * 4); gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, px); return px; }
  function lit(px) { var n = 0; for (var i = 0; i < px.length; i += 4) if (px[i] + px[i+1] + px[i+2] > 30) n++; return n; }
  function diff(a, c) { var n = 0; for (var i = 0; i < a.length; i += 4)
    if (Math.abs(a[i] - c[i]) + Math.abs(a[i+1] - c[i+1]) + Math.abs(a[i+2] - c[i+2]) > 30) n++; return n; }
  function fire(el, kind) { el.dispatchEvent(new Event(kind, {bubbles: true})); }
  try {
    await medmaeOpen(1);
    var nv = medmaeViewer.nv, on = grab(nv);
    var box = document.querySelector('#viewer-1 .nv-toggle[data-layer=map]');
    box.checked = false; fire(box, 'change'); var off = grab(nv);
    box.checked = true; fire(box, 'change'); var back = grab(nv);
    var slider = document.querySelector('#viewer-1 .nv-threshold');
    slider.value = String(parseFloat(slider.max) * 0.9); fire(slider, 'input'); var high = grab(nv);
    var before = Array.from(nv.scene.crosshairPos).join(',');
    document.querySelector('#viewer-1 .nv-goto[data-region="1"]').click();
    b.setAttribute('data-moved', String(Array.from(nv.scene.crosshairPos).join(',') !== before));
    b.setAttribute('data-lit', lit(on)); b.setAttribute('data-toggled', diff(on, off));
    b.setAttribute('data-restored', diff(on, back)); b.setAttribute('data-threshold', diff(on, high));
    b.setAttribute('data-volumes', nv.volumes.length);
    b.setAttribute('data-radiological', String(nv.opts.isRadiologicalConvention));
  } catch (e) { b.setAttribute('data-error', String(e)); }
  b.setAttribute('data-done', '1');
});
</script>"""


def browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def page_requests(netlog: str) -> list[str]:
    """URLs of http(s)/ws(s) requests the page started (the browser's own background requests
    carry no origin as initiator)."""
    found = []
    for event in json.loads(netlog).get("events", []):
        params = event.get("params") or {}
        url = str(params.get("url", ""))
        if re.match(r"(https?|wss?)://", url) and params.get("initiator", "not an origin") != "not an origin":
            found.append(url)
    return found


def open_in_chromium(page, tmp_path, extra: str = "") -> tuple[dict, list[str]]:
    checked = page.parent / "checked.html"
    checked.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECK + extra + "</body>"), encoding="utf-8")
    netlog = tmp_path / "net.json"
    dom = subprocess.run([browser(), "--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                          "--disable-background-networking", "--no-first-run", "--window-size=1280,900",
                          "--virtual-time-budget=30000", f"--log-net-log={netlog}", "--dump-dom", checked.as_uri()],
                         capture_output=True, text=True, timeout=180).stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    return dict(re.findall(r'data-([a-z]+)="([^"]*)"', body)), page_requests(netlog.read_text())


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = scored_run(tmp_path_factory.mktemp("scored"), [brain_case()])
    return write_report(run, tmp_path_factory.mktemp("report") / "report.html")


def test_viewer_is_offline_and_embedded(report):
    text = report.read_text(encoding="utf-8")
    assert "<script src='niivue.js'></script>" in text and (report.parent / "niivue.js").stat().st_size > 1e6
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", text)
    data = json.loads(re.search(r"<script type='application/json' class='nv-data'>(.*?)</script>", text).group(1))
    assert {"image", "map", "binary", "label"} <= set(data) and len(data["regions"]) >= 2
    assert report.stat().st_size < 3e6


def test_viewer_renders_toggles_and_makes_no_request(report, tmp_path):
    if browser() is None:
        pytest.skip("no Chromium (.ci/run installs it)")
    seen, requests = open_in_chromium(report, tmp_path)
    assert "error" not in seen and seen["done"] == "1", seen
    assert int(seen["lit"]) > 10000 and seen["volumes"] == "4" and seen["radiological"] == "true"
    assert int(seen["toggled"]) > 1000 and seen["restored"] == "0" and int(seen["threshold"]) > 1000
    assert seen["moved"] == "true"
    assert requests == []
    # the detector sees a request the page makes
    _, requests = open_in_chromium(report, tmp_path, "<script>fetch('http://192.0.2.1/x').catch(function () {});</script>")
    assert requests == ["http://192.0.2.1/x"]
