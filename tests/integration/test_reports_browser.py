"""The reports page and the yearly report in real Chromium: charts drawn, labelled and not
empty (their screenshots are decoded and their pixels counted); the PDF printed."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.conftest import ROOT, Gateway
from tests.integration.test_stats_api import YEAR, closed_without_consultation, generated_threads, insert

DOCS = ROOT / "docs"


async def inked_pixels(browser: Browser, png: bytes) -> tuple[int, int]:
    """(pixels that are not white, pixels of the bar/pie blue) of a PNG, decoded by Chromium."""
    page = await browser.new_page()
    try:
        return tuple(
            await page.evaluate(
                """async (data) => {
                    const img = new Image();
                    img.src = "data:image/png;base64," + data;
                    await img.decode();
                    const c = document.createElement("canvas");
                    c.width = img.width; c.height = img.height;
                    const ctx = c.getContext("2d");
                    ctx.drawImage(img, 0, 0);
                    const px = ctx.getImageData(0, 0, c.width, c.height).data;
                    let ink = 0, blue = 0;
                    for (let i = 0; i < px.length; i += 4) {
                        if (px[i] < 240 || px[i + 1] < 240 || px[i + 2] < 240) ink++;
                        const near = (v, want) => Math.abs(v - want) < 30;
                        if (near(px[i], 0) && near(px[i + 1], 0x72) && near(px[i + 2], 0xB2)) blue++;
                    }
                    return [ink, blue];
                }""",
                base64.b64encode(png).decode(),
            )
        )  # type: ignore[return-value]
    finally:
        await page.close()


async def logged_in_page(browser: Browser, gateway: Gateway, who: str) -> Page:
    page = await browser.new_page(viewport={"width": 1000, "height": 900})
    resp = await page.request.post(
        gateway.store_url + "/api/session", data={"login": who, "password": f"{who}-demo"}
    )
    assert resp.status == 200
    return page


async def test_reports_page_draws_labelled_charts_and_the_yearly_report_prints(
    gateway: Gateway, browser: Browser, tmp_path: Path
) -> None:
    gateway.seed_demo_accounts()
    this_year = generated_threads(21, YEAR, 400, over_60=2)  # two people over 60: too few to publish
    # Ten contacts without a consultation: 3 spam, 7 tests, never among the 400 consultations.
    contacts = closed_without_consultation(23, YEAR, ["spam"] * 3 + ["test"] * 7)
    await insert(gateway, this_year + contacts + generated_threads(22, YEAR - 1, 300))

    consultant = await logged_in_page(browser, gateway, "anna")
    resp = await consultant.goto(f"{gateway.store_url}/reports?year={YEAR}")
    assert resp is not None and resp.status == 403

    page = await logged_in_page(browser, gateway, "sofia")
    requests_elsewhere: list[str] = []
    page.on(
        "request", lambda r: None if r.url.startswith(gateway.store_url) else requests_elsewhere.append(r.url)
    )
    await page.goto(f"{gateway.store_url}/reports?year={YEAR}&line=113")
    await expect(page.locator("h1")).to_have_text(f"Consultations {YEAR}")
    await expect(page.locator("#total td").first).to_have_text("400")
    # Nobody is a known person in generated data: 0 people, 400 consultations of people not known.
    await expect(page.locator("#people td")).to_have_text(["0", "400"])
    other = page.locator("#no-consultation table")
    await expect(other.locator("tr", has_text="Spam or robot").locator("td").nth(1)).to_have_text("3")
    await expect(other.locator("tr", has_text="Test").locator("td").nth(1)).to_have_text("7")
    await expect(other.locator("tr", has_text="All").locator("th").nth(1)).to_have_text("10")
    charts = {
        "channel": ("Requests by channel", "pie", ["E-mail", "Web chat", "Telegram"]),
        "gender": ("Women and men consulted", "bar", ["Woman", "Man"]),
        "topics": ("Topics", "bar", ["Legal work abroad", "Au-pair"]),
        "destination_country": ("Top destination countries", "bar", ["Poland", "Lithuania"]),
        "age_group": ("Age groups", "bar", ["18-26", "27-40"]),
        "months": ("Requests per month, by channel", "line", ["Jan", "Dec", str(YEAR - 1)]),
    }
    for section, (title, kind, labels) in charts.items():
        svg = page.locator(f"#{section} svg.chart.{kind}")
        await expect(svg).to_have_attribute("aria-label", title)
        for label in labels:
            await expect(svg).to_contain_text(label)
        shot = await svg.screenshot()
        (tmp_path / f"{section}.png").write_bytes(shot)
        ink, blue = await inked_pixels(browser, shot)
        assert ink > 3000, (section, ink)  # drawn, not a blank box
        assert blue > 300, (section, blue)  # the first series' bars, slice or line
    # The figures under a chart are the exact counts for a supervisor.
    women = page.locator("#gender table tr", has_text="Woman").locator("td").nth(1)
    await expect(women).to_have_text(str(sum(d["case"]["gender"] == "f" for d in this_year)))
    await expect(page.locator("#age_group table tr", has_text="60+").locator("td").nth(1)).to_have_text("2")
    assert requests_elsewhere == []

    # Publication view and the yearly report: small cells hidden, and said so.
    await page.goto(f"{gateway.store_url}/reports/yearly?year={YEAR}&line=113")
    await expect(page.locator("#suppression")).to_contain_text("from 1 to 4 are suppressed")
    await expect(page.locator("#age_group table tr", has_text="60+").locator("td").nth(1)).to_have_text("x")
    # 3 spam is too few to publish, and 7 tests would give it away from the total of 10.
    other = page.locator("#no-consultation table")
    await expect(other.locator("tr", has_text="Spam or robot").locator("td").nth(1)).to_have_text("x")
    await expect(other.locator("tr", has_text="Test").locator("td").nth(1)).to_have_text("x")

    env = {**os.environ, **gateway.env["store"]}
    out = tmp_path / "report.pdf"
    code, err = await command(env, "--year", str(YEAR), "--line", "113", "--out", str(out))
    assert code == 0, err
    pdf = out.read_bytes()
    assert pdf.startswith(b"%PDF-") and len(pdf) > 20_000
    html_out = tmp_path / "report.html"
    code, err = await command(env, "--year", str(YEAR), "--line", "113", "--out", str(html_out))
    assert code == 0, err
    html = html_out.read_text(encoding="utf-8")
    assert "<style>" in html and html.count("<svg") >= 8 and "from 1 to 4 are suppressed" in html


async def command(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run the report command as an operator would; (exit code, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.store.reports",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, err.decode(errors="replace")
