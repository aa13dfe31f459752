"""An XSS corpus rendered by the console in real Chromium: 0 scripts run, 0 requests leave.

The hostile messages are written straight into the database, past e-mail ingest's own
sanitiser, so what is tested is the console's defence alone: the store sanitises HTML again
when it serves it, the console puts every other text in with textContent, and e-mail HTML
sits in a frame sandboxed without scripts under a CSP that blocks remote requests.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from playwright.async_api import Browser, expect
from pymongo import AsyncMongoClient

from shared.html import sanitise
from tests.conftest import Gateway
from tests.integration.helpers import Consultant
from tests.integration.test_console_journey import LAPTOP, Tracker, Watch, logged_in
from tests.integration.test_console_journey import tracker as tracker

# {u}: a server that counts requests (tracking pixels, remote CSS); __xss: counts script runs.
CORPUS = [
    "<script>__xss('script')</script>",
    "<img src=x onerror=__xss('onerror')>",
    '<img src="{u}/pixel.gif" width=1 height=1>',
    '<img srcset="{u}/srcset.png 1x">',
    "<svg onload=__xss('svg')>",
    "<svg><script>__xss('svg-script')</script></svg>",
    '<svg><use href="{u}/use.svg#x"/></svg>',
    "<iframe src=\"javascript:__xss('iframe-js')\"></iframe>",
    "<iframe srcdoc=\"<script>parent.__xss('srcdoc')</script>\"></iframe>",
    "<a href=\"javascript:__xss('href')\">click</a>",
    "<body onload=__xss('body')>",
    '<div style="background:url({u}/style-attr.png)">styled</div>',
    "<style>@import '{u}/import.css'; p {{ background: url({u}/style-tag.png) }}</style><p>p</p>",
    '<link rel="stylesheet" href="{u}/link.css">',
    '<meta http-equiv="refresh" content="0;url={u}/refresh">',
    '<object data="{u}/object"></object><embed src="{u}/embed">',
    '<video src="{u}/video" onerror=__xss(\'video\')></video><audio src="{u}/audio"></audio>',
    "<form action=\"{u}/form\"><input autofocus onfocus=__xss('autofocus')><button>go</button></form>",
    "<details open ontoggle=__xss('toggle')>",
    "<math><mtext><table><mglyph><style><img src=x onerror=__xss('mxss')>",
    "<noscript><p title=\"</noscript><img src=x onerror=__xss('noscript')>\">",
    "\"><img src=x onerror=__xss('attribute-break')>",
    '<base href="{u}/"><img src="relative.png">',
    '<table background="{u}/table-bg.png"><tr><td>cell</td></tr></table>',
    '<input type="image" src="{u}/input.png">',
    "<img src=\"data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' onload='__xss(1)'/>\">",
    "<x onmouseover=__xss('hover')>hover me</x>",
    "<textarea></textarea><script>__xss('textarea')</script>",
    "<template><script>__xss('template')</script></template>",
    "<object data=\"javascript:__xss('object-js')\"></object>",
]

ACTIVE = "img, svg, script, iframe, style, link, object, embed, video, audio, [onerror], [onload], x, math"
# Outside the frames nothing but the console's own markup: no element a payload could bring.
INJECTED = ", ".join(f"#app {sel.strip()}" for sel in ACTIVE.split(",")).replace(
    "#app iframe", "#app iframe:not(.html)"
)


async def hostile_thread(gateway: Gateway, u: str) -> tuple[str, int]:
    """A real chat thread in La Strada's queue, then the corpus written into it as e-mails
    and as every other text the console shows. Returns (thread id, messages written)."""
    anna = Consultant(gateway.store_url)
    await anna.login("anna", "anna-demo")
    await anna.open_events()
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{gateway.chat_url}/chat/ws")
        await ws.send_json({"type": "start", "line": "113", "region": "minsk"})
        await ws.send_json({"type": "message", "id": str(uuid.uuid4()), "text": CORPUS[0]})
        while (await ws.receive_json(timeout=15)).get("type") != "ack":
            pass
        await ws.close()
    queued = await anna.wait_event(lambda e: e["name"] == "ThreadQueued")
    await anna.close()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(gateway.urls.mongo_url)
    try:
        db = client[gateway.database]
        thread = await db.threads.find_one({"_id": queued["thread_id"]})
        assert thread is not None and thread["queue"] == "lastrada-migration"
        start = datetime.now(UTC)
        docs = []
        for i, raw in enumerate(CORPUS):
            payload = raw.format(u=u)
            docs.append(
                {
                    "_id": uuid.uuid4().hex,
                    "source_id": f"xss:{i}",
                    "thread_id": thread["_id"],
                    "direction": "in" if i % 3 else "out",
                    "author": "client" if i % 3 else payload,
                    "channel": "email",
                    "text": payload,
                    "html": payload,
                    "subject": payload,
                    "quoted": payload,
                    "attachments": [
                        {
                            "id": str(i),
                            "filename": payload,
                            "content_type": payload,
                            "size": 1,
                            "stored": True,
                        }
                    ],
                    "delivery": {"status": payload, "at": start},
                    "created_at": start + timedelta(milliseconds=i),
                }
            )
        await db.messages.insert_many(docs)
        hostile = CORPUS[2].format(u=u)
        await db.threads.update_one(
            {"_id": thread["_id"]},
            {"$set": {"subject": hostile, "topic": CORPUS[1], "region": CORPUS[4], "language": CORPUS[5]}},
        )
        return thread["_id"], await db.messages.count_documents({"thread_id": thread["_id"]})
    finally:
        await client.close()


async def test_xss_corpus_runs_no_script_and_sends_no_request(
    gateway: Gateway, browser: Browser, tracker: Tracker
) -> None:
    gateway.seed_demo_accounts()
    thread_id, count = await hostile_thread(gateway, tracker.url)
    watch = Watch(gateway.store_url)
    context = await browser.new_context(viewport=LAPTOP, locale="en-GB")
    ran: list[str] = []
    await context.expose_binding("__xss", lambda source, what: ran.append(str(what)))
    # A CSP violation in the console's own page means markup got in where text belongs.
    await context.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " e => window.__xss('csp:' + e.violatedDirective));"
    )
    page = await logged_in(context, gateway, "anna", watch)
    await page.locator('#queues button[data-queue="lastrada-migration"]').click()
    await page.locator(f'#threads button[data-thread="{thread_id}"]').click()
    messages = page.locator("#thread .msg")
    await expect(messages).to_have_count(count)
    # Shown, as text: the payloads are visible to the consultant, never interpreted.
    await expect(page.locator("#thread h2")).to_contain_text("<img src=")
    await expect(page.locator("#thread .msg.out .meta").filter(has_text=CORPUS[0])).to_have_count(1)
    # A frame for each payload that leaves something to show once sanitised.
    shown = [p for p in CORPUS if sanitise(p.format(u=tracker.url))]
    assert 0 < len(shown) < len(CORPUS)
    await expect(page.locator("#thread .msg iframe.html")).to_have_count(len(shown))
    for frame in await page.locator("#thread .msg iframe.html").all():
        await expect(frame).to_have_attribute("sandbox", "")
    # Open every fold (quoted history, plain text): more places a payload could wake up.
    for summary in await page.locator("#thread details summary").all():
        await summary.click()
    await page.mouse.move(400, 400)
    # Each frame's document is loaded and inspected: nothing active survived sanitising.
    for frame in page.frames[1:]:
        await frame.wait_for_load_state()
        active = await frame.locator(ACTIVE).count()
        assert active == 0, await frame.content()
    assert await page.locator(INJECTED).count() == 0
    # A round trip to the store after everything rendered: pending requests would have been seen.
    await page.reload()
    await expect(page.locator("#live")).to_have_class("on")
    assert ran == []
    assert watch.dialogs == []
    assert watch.elsewhere == []
    assert tracker.hits == []
    await context.close()
