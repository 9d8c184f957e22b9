"""Screenshots of the anomaly report for docs/anomaly.md: the full page and one case, in headless Chromium.

    python docs/figures/make_report_screenshots.py SCORES [--healthy H] [--evaluation E] [--out docs/figures]

SCORES is an `medmae anomaly score` output folder. The report is written to a temporary
folder (nothing else is touched) and captured at a reader's browser width (1280 px):
OUT/report_full.png (the whole page, scaled to half size) and OUT/report_case.png (the
first case alone: acquisition lines, montage and findings, at full size). Needs Chromium (`chromium` on PATH).
tests/heads/anomaly/test_report_screenshots.py runs it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTH = 1280
HEIGHT_MAX = 12000


def browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        raise SystemExit("make_report_screenshots: Chromium is needed (apt-get install chromium)")
    return found


def _chromium(*args: str) -> str:
    cmd = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--disable-background-networking", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout


def page_height(page: Path) -> int:
    """The page's height in CSS px at WIDTH (a script writes it on <body> for --dump-dom)."""
    probe = page.with_name("probe.html")
    js = ("<script>window.addEventListener('load',function(){document.body.setAttribute('data-height',"
          "document.documentElement.scrollHeight)});</script>")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", js + "</body>"), encoding="utf-8")
    dom = _chromium(f"--window-size={WIDTH},900", "--dump-dom", probe.as_uri())
    return min(int(re.search(r'data-height="(\d+)"', dom).group(1)), HEIGHT_MAX)


def screenshot(url: str, out: Path, height: int, scale: float = 1.0) -> Path:
    _chromium(f"--window-size={WIDTH},{height}", f"--force-device-scale-factor={scale}", f"--screenshot={out}", url)
    if not out.is_file():
        raise SystemExit(f"make_report_screenshots: Chromium wrote no {out.name}")
    return out


def make(scores: Path, out: Path, healthy: list[Path] = (), evaluation: Path | None = None) -> list[Path]:
    from medmae.heads.anomaly.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        page = write_report(scores, Path(tmp) / "report.html", evaluation, list(healthy))
        full = screenshot(page.as_uri(), out / "report_full.png", page_height(page), scale=0.5)
        single = case_page(page)
        case = screenshot(single.as_uri(), out / "report_case.png", min(page_height(single), 1800))
    return [full, case]


def case_page(page: Path) -> Path:
    """The report's first case alone on a page with the report's style (head kept, body = the case)."""
    text = page.read_text(encoding="utf-8")
    start = text.index('<div class="case" id="case-1">')
    end = text.find('<div class="case" id="case-2">')
    end = end if end > 0 else text.index("<details id='settings'>")
    single = page.with_name("case.html")
    single.write_text(text[:text.index("<body>") + 6] + text[start:end] + "</body></html>", encoding="utf-8")
    return single


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scores", type=Path)
    p.add_argument("--healthy", type=Path, nargs="*", default=[])
    p.add_argument("--evaluation", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = p.parse_args(argv)
    for path in make(args.scores, args.out, args.healthy, args.evaluation):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
