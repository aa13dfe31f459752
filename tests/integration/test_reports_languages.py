"""The reports page and the yearly report in Belarusian and Russian, in real Chromium, with the
exact words of each language; the report command in Belarusian; the console's "Reports" link
for supervisors only."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.conftest import Gateway
from tests.integration.test_console_journey import LAPTOP, Watch, logged_in
from tests.integration.test_reports_browser import command, logged_in_page
from tests.integration.test_stats_api import YEAR, closed_without_consultation, generated_threads, insert


async def test_the_reports_in_belarusian_and_russian(
    gateway: Gateway, browser: Browser, tmp_path: Path
) -> None:
    gateway.seed_demo_accounts()
    this_year = generated_threads(41, YEAR, 200, over_60=2)  # two people over 60: too few to publish
    contacts = closed_without_consultation(42, YEAR, ["spam"] * 6)
    await insert(gateway, this_year + contacts + generated_threads(43, YEAR - 1, 100))
    women = str(sum(d["case"]["gender"] == "f" for d in this_year))

    page = await logged_in_page(browser, gateway, "sofia")
    await page.goto(f"{gateway.store_url}/reports?year={YEAR}&line=113&lang=be")
    await expect(page.locator("html")).to_have_attribute("lang", "be")
    await expect(page.locator("h1")).to_have_text(f"Кансультацыі {YEAR}")
    await expect(page.locator("#suppression")).to_have_text(
        "Дакладныя лічбы для ўнутранага выкарыстання; не для публікацыі. "
        "Адзначце «для публікацыі», каб схаваць малыя ячэйкі."
    )
    await expect(page.locator("#total h2")).to_have_text("Усе кансультацыі")
    await expect(page.locator("#total th").nth(2)).to_have_text("Змена")
    await expect(page.locator("#people th")).to_have_text(
        ["Розных людзей (дзе вядома)", "Кансультацыі, дзе чалавек невядомы"]
    )
    gender = page.locator("#gender")
    await expect(gender.locator("h2")).to_have_text("Жанчыны і мужчыны, якія атрымалі кансультацыю")
    await expect(gender.locator("th")).to_have_text(["Пол", str(YEAR), "Доля", str(YEAR - 1), "Змена"])
    await expect(gender.locator("tr", has_text="Жанчына").locator("td").nth(1)).to_have_text(women)
    await expect(gender.locator("svg")).to_have_attribute(
        "aria-label", "Жанчыны і мужчыны, якія атрымалі кансультацыю"
    )
    await expect(page.locator("#age_group h2")).to_have_text("Узроставыя групы")
    await expect(page.locator("#age_group th").first).to_have_text("Узрост")
    await expect(page.locator("#topics h2")).to_have_text("Тэмы")
    await expect(page.locator("#destination_country h2")).to_have_text("Асноўныя краіны прызначэння")
    await expect(page.locator("#destination_country")).to_contain_text("Польшча")
    months = page.locator("#months svg")
    await expect(months).to_have_attribute("aria-label", "Звароты па месяцах і каналах")
    for word in ("Сту", "Сне", f"усе, {YEAR - 1}", "Эл. пошта", "Вэб-чат"):
        await expect(months).to_contain_text(word)
    await expect(page.locator("#channel h2")).to_have_text("Звароты па каналах")
    other = page.locator("#no-consultation")
    await expect(other.locator("h2")).to_have_text("Звароты без кансультацыі")
    await expect(other.locator("th").first).to_have_text("Прычына")
    await expect(other.locator("tr", has_text="Спам або робат").locator("td").nth(1)).to_have_text("6")
    await expect(page.locator("footer")).to_contain_text("Падрыхтавана hotline-gateway")
    # The form offers the language and keeps it; its links carry it to the yearly report and XLSX.
    form = page.locator("form.filters")
    await expect(form.locator("select[name=lang]")).to_have_value("be")
    await expect(form).to_contain_text("Мова")
    await expect(form.get_by_role("link", name="XLSX па месяцах")).to_have_attribute(
        "href", f"/api/stats.xlsx?from={YEAR}-01-01&to={YEAR}-12-31&by=channel&period=month&compare=1&lang=be"
    )
    await form.locator("select[name=lang]").select_option("ru")
    await form.get_by_role("button", name="Паказаць").click()
    await expect(page.locator("h1")).to_have_text(f"Консультации {YEAR}")
    await expect(page.locator("html")).to_have_attribute("lang", "ru")

    # The yearly report in Russian: suppressed, and said so in Russian.
    await page.goto(f"{gateway.store_url}/reports/yearly?year={YEAR}&line=113&lang=ru")
    await expect(page.locator("html")).to_have_attribute("lang", "ru")
    await expect(page.locator("h1")).to_have_text(f"Консультации {YEAR}")
    await expect(page.locator("#suppression")).to_contain_text("числа от 1 до 4 скрыты")
    await expect(page.locator("#gender h2")).to_have_text("Женщины и мужчины, получившие консультацию")
    await expect(page.locator("#gender tr", has_text="Женщина").locator("td").nth(1)).to_have_text(women)
    await expect(page.locator("#age_group tr", has_text="60+").locator("td").nth(1)).to_have_text("x")
    await expect(page.locator("#months svg")).to_contain_text("Янв")
    await expect(
        page.locator("#no-consultation tr", has_text="Спам или робот").locator("td").nth(1)
    ).to_have_text("6")
    resp = await page.goto(f"{gateway.store_url}/reports?year={YEAR}&lang=de")
    assert resp is not None and resp.status == 422

    # The command prints the report in Belarusian.
    env = {**os.environ, **gateway.env["store"]}
    out = tmp_path / "report-be.html"
    code, err = await command(env, "--year", str(YEAR), "--line", "113", "--lang", "be", "--out", str(out))
    assert code == 0, err
    html = out.read_text(encoding="utf-8")
    assert '<html lang="be">' in html and f"<h1>Кансультацыі {YEAR}</h1>" in html and "ад 1 да 4" in html
    pdf = tmp_path / "report-be.pdf"
    code, err = await command(env, "--year", str(YEAR), "--line", "113", "--lang", "be", "--out", str(pdf))
    assert code == 0, err
    assert pdf.read_bytes().startswith(b"%PDF-")


async def test_the_console_links_the_reports_for_supervisors_only(gateway: Gateway, browser: Browser) -> None:
    gateway.seed_demo_accounts()
    watch = Watch(gateway.store_url)
    # One browser context each: a context keeps its login's cookie.
    anna_context = await browser.new_context(viewport=LAPTOP, locale="en-GB")
    context = await browser.new_context(viewport=LAPTOP, locale="en-GB")
    try:
        anna = await logged_in(anna_context, gateway, "anna", watch)
        await expect(anna.locator("#supervisor-toggle")).to_be_hidden()
        await expect(anna.locator("#reports-link")).to_be_hidden()

        sofia = await logged_in(context, gateway, "sofia", watch)
        link = sofia.locator("header").get_by_role("link", name="Reports")
        await expect(link).to_be_visible()
        await expect(link).to_have_attribute("href", "/reports?lang=en")
        await sofia.locator("header .lang-select").select_option("ru")
        link = sofia.locator("header").get_by_role("link", name="Отчёты")
        await expect(link).to_have_attribute("href", "/reports?lang=ru")
        await link.click()
        await expect(sofia.locator("h1")).to_have_text(f"Консультации {YEAR + 1}")
        assert watch.elsewhere == [] and watch.dialogs == []
    finally:
        await anna_context.close()
        await context.close()
