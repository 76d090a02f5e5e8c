"""What the console's browser tests do alike: log in through the form, save a screenshot of
what a person sees (``reports/console/<name>.png``)."""
from __future__ import annotations

from pathlib import Path

from appliance.ops import totp

REPORTS = Path(__file__).resolve().parents[2] / "reports" / "console"


def log_in(page, account: tuple[str, str, str]) -> None:
    """Log ``account`` (name, password, TOTP secret) in on the login page."""
    name, password, secret = account
    page.goto("/login")
    page.fill("input[name=account]", name)
    page.fill("input[name=password]", password)
    page.fill("input[name=code]", totp.totp(secret))
    page.click("button[type=submit]")
    page.wait_for_selector("#role-badge")


def shot(page, name: str) -> None:
    REPORTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(REPORTS / f"{name}.png"), full_page=True)
