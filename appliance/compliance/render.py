"""The report as a person reads it: one HTML page (Jinja2, autoescaped) and its PDF.

The PDF is printed by headless Chromium from the HTML file - the browser the console's tests
already use, so no PDF library joins the product. Chromium is needed only for the PDF, and
only on the host that makes the report: where none is found (``--chromium`` or the usual
names on ``PATH``), the HTML and JSON are still written and the command says why there is no
PDF. The page loads nothing from the network (every style is inline) and Chromium is started
with name resolution switched off, so printing cannot fetch anything. Chinese text uses the
Noto CJK fonts (Debian: fonts-noto-cjk).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from appliance.compliance.requirements import MET, NEEDS_DOCUMENT, NOT_APPLICABLE, NOT_MET

TEMPLATE = "report.html"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PRINT_TIMEOUT_S = 120.0  # a 10-page report prints in about 2 s; a hung browser must not hang the command
PDF_MAGIC = b"%PDF-"
STATUS_CLASS = {MET: "met", NOT_MET: "notmet", NOT_APPLICABLE: "na", NEEDS_DOCUMENT: "doc"}
STATUS_ZH = {MET: "符合", NOT_MET: "不符合", NOT_APPLICABLE: "不适用", NEEDS_DOCUMENT: "需文档"}
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions", "--no-first-run",
                  "--no-pdf-header-footer", "--host-resolver-rules=MAP * ~NOTFOUND")


class PdfUnavailable(Exception):
    """No PDF could be printed; the message says why and what to do."""


def render_html(document: dict[str, Any]) -> str:
    env = Environment(loader=PackageLoader("appliance.compliance", "templates"),
                      autoescape=select_autoescape(("html",)), trim_blocks=True, lstrip_blocks=True)
    by_area: dict[str, list[dict]] = {area: [] for area in document["areas"]}
    for row in document["requirements"]:
        by_area.setdefault(row["area"], []).append(row)
    return env.get_template(TEMPLATE).render(doc=document, by_area=by_area, status_class=STATUS_CLASS,
                                             status_zh=STATUS_ZH, statuses=(NOT_MET, NEEDS_DOCUMENT, MET,
                                                                            NOT_APPLICABLE))


def find_chromium(given: str | None = None) -> str | None:
    """``given`` if it is an executable, else the first Chromium on ``PATH``."""
    if given:
        return shutil.which(given) or (given if Path(given).is_file() else None)
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def render_pdf(html: Path, pdf: Path, chromium: str | None = None) -> Path:
    """Print ``html`` to ``pdf`` with headless Chromium; PdfUnavailable says why not."""
    browser = find_chromium(chromium)
    if browser is None:
        raise PdfUnavailable(f"no Chromium found ({chromium or ', '.join(CHROMIUM_NAMES)}): install it (Debian: "
                             "apt install chromium fonts-noto-cjk) or pass --chromium PATH; the HTML and JSON are "
                             "written")
    pdf.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="appliance-report-") as profile:
        try:
            done = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                   f"--print-to-pdf={pdf}", html.resolve().as_uri()],
                                  capture_output=True, timeout=PRINT_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise PdfUnavailable(f"{browser} did not print within {PRINT_TIMEOUT_S:.0f} s") from None
        except OSError as exc:
            raise PdfUnavailable(f"{browser} could not be started: {exc}") from None
    if not pdf.is_file() or pdf.read_bytes()[:len(PDF_MAGIC)] != PDF_MAGIC:
        last = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise PdfUnavailable(f"{browser} printed no PDF (exit {done.returncode}): {last[0]}")
    return pdf
