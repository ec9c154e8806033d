"""The pages as a person uses them, in a real headless Chromium (the system's): the chat on the
home page (its rich replies too: formatting, buttons pressed by keyboard, edits, notices and
images; and what the inbox brings without the visitor saying anything), and the costs page with
its table and chart."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Page,
    Route,
    expect,
    sync_playwright,
)

from portabot import Button, bold
from portabot.replies import Reply
from portabot.testing.fakes import ImageServer, serve
from tests.conftest import BotFactory, post_telegram, telegram_update
from tests.test_limits import windows
from tests.test_web_inbox import put, visitor_id
from tests.test_web_rich import rich_flow

# Debian's Chromium, which .ci/run installs when `chromium` is not on the PATH.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# In CI a missing Chromium fails the run; elsewhere the browser tests are skipped.
REQUIRE_CHROMIUM = bool(os.environ.get("CI"))
CODE_LINE = re.compile(r"^/in ([a-z]+(?:-[a-z]+)+)$", re.MULTILINE)
on_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def chromium(sqlite_template: Path) -> Iterator[Browser]:
    # Migrations run through asyncio.run(), which cannot start while Playwright's synchronous
    # API holds this thread's event loop: the template database is made before the browser.
    if not os.access(CHROMIUM, os.X_OK):
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if REQUIRE_CHROMIUM:
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    """A fresh browser tab (its own cookies) that fails the test on an uncaught script error."""
    context = chromium.new_context()
    context.set_default_timeout(5_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda m: errors.append(m.text) if unexpected(m) else None)
    yield tab
    context.close()
    assert errors == []


def unexpected(message: ConsoleMessage) -> bool:
    if "Content Security Policy" in message.text:
        return True  # a script, style or request the page's own policy refused, at any level
    # Chromium logs the 400 by which the costs page learns an input is wrong, the 404 of the
    # favicon it asks for on its own, and the chat's 429 (slow down); anything else logged as
    # an error is a failure.
    url = message.location.get("url", "")
    slowed = url.endswith("/webhooks/web") and "429" in message.text
    expected = "/api/costs?" in url or url.endswith("/favicon.ico") or slowed
    return message.type == "error" and not expected


@on_sqlite
def test_chat_in_the_browser_and_link_telegram(start_bot: BotFactory, page: Page) -> None:
    bot = start_bot()
    page.goto(f"{bot.base_url}/")
    replies = page.locator(".msg.bot")

    def say(text: str) -> str:
        before = replies.count()
        page.fill("#text", text)
        page.press("#text", "Enter")
        expect(replies).to_have_count(before + 1)
        return replies.last.inner_text()

    assert say("hello") == "Send /help to see what I can do."
    expect(page.locator(".msg.me")).to_have_text(["hello"])
    match = CODE_LINE.search(say("/bind"))
    assert match, replies.last.inner_text()

    linked = post_telegram(bot, telegram_update(1, f"/in {match.group(1)}"))
    assert linked.status_code == 200 and linked.json()["text"].startswith("Linked!")

    assert say("/me") == "Linked platforms: telegram, web."


@on_sqlite
def test_the_chat_says_when_to_try_again_and_when_it_is_off(
    start_bot: BotFactory, page: Page
) -> None:
    bot = start_bot(web_chat_per_address=2)
    page.goto(f"{bot.base_url}/")
    shown, errors = page.locator("#log .msg"), page.locator(".msg.error")
    started, sent = time.time(), 0
    while not errors.count():  # until refused: a minute's window may end during the test
        sent += 1
        assert sent <= 2 * windows(started, time.time(), 60) + 1
        before = shown.count()
        page.fill("#text", f"message {sent}")
        page.press("#text", "Enter")
        expect(shown).to_have_count(before + 2)  # what was said, and the answer or the error
    expect(errors).to_have_text(re.compile(r"^Slow down: try again in \d+ s$"))
    expect(page.locator(".msg.bot")).to_have_count(sent - 1)

    off = start_bot(web_chat=False)
    page.goto(f"{off.base_url}/")
    expect(page.locator("#off")).to_contain_text("The web chat is off")
    assert page.locator("#chat").count() == 0


@on_sqlite
def test_the_costs_page_follows_the_workload(start_bot: BotFactory, page: Page) -> None:
    bot = start_bot()
    expected = bot.get("/api/costs").json()
    keys = [f"{o['target']}:{o['plan']}" for o in expected["options"]]
    page.goto(f"{bot.base_url}/")
    page.click("text=What hosting this bot costs")
    page.wait_for_url("**/costs*")

    rows = page.locator("#options tbody tr")
    expect(rows).to_have_count(len(keys))
    shown = [row.get_attribute("data-key") for row in rows.all()]
    assert shown == keys and {key.split(":")[0] for key in keys} == {"heroku", "lambda", "vps"}
    expect(page.locator("tr.cheapest")).to_have_count(1)
    expect(page.locator("tr.cheapest")).to_have_attribute("data-key", expected["cheapest"])
    expect(page.locator("input[name=updates]")).to_have_value("100000")

    chart = page.locator("#chart")
    expect(chart.locator("path.option")).to_have_count(len(keys))
    expect(chart.locator("line.workload")).to_have_count(1)
    expect(chart.locator("circle.break-even")).to_have_count(len(expected["break_evens"]))
    workload_x = float(chart.locator("line.workload").get_attribute("x1") or "nan")

    rest = page.locator('tr[data-key="lambda:arm64+apigw-rest"] td.cost')
    cost = rest.inner_text()
    page.fill("input[name=updates]", "1000000000")  # a peak of 3,800/s: more than one dyno
    expect(rest).not_to_have_text(cost)
    expect(page.locator('tr[data-key="heroku:eco"]')).to_have_class(re.compile(r"\bunfit\b"))
    expect(chart.locator("path.option")).to_have_count(len(keys))
    expect(chart.locator("line.workload")).to_have_count(1)
    assert float(chart.locator("line.workload").get_attribute("x1") or "nan") > workload_x
    assert "updates=1000000000" in page.url  # the address keeps the workload, to share it

    # What to pick at this volume, and where that changes, in words on the page and the chart.
    page.fill("input[name=updates]", "1000000")
    page.fill("input[name=memory]", "1024")
    expect(page.locator("#summary")).to_contain_text("Lambda is cheaper below 58,")
    answer = bot.get("/api/costs", params={"updates": "1000000", "memory": "1024"}).json()
    expect(chart.locator("#cheapest-label")).to_have_text(answer["cheapest_label"])
    assert answer["cheapest_label"].startswith("vps:")
    (mark,) = answer["break_evens"]
    expect(chart.locator(".break-even-label")).to_have_text(mark["label"].replace("\n", ""))
    expect(chart.locator(".break-even-mark title")).to_have_text(mark["sentence"])
    unfit = page.locator('tr[data-key="heroku:eco"] li.why')
    expect(unfit).to_have_text(
        "does not fit: " + next(o["why"] for o in answer["options"] if o["plan"] == "eco")
    )
    expect(page.locator("#notes li")).to_have_count(len(answer["not_included"]))
    page.fill("input[name=memory]", "")
    expect(page.locator("#notes p.ending")).to_have_count(2)  # Eco and Basic stop at one dyno

    page.fill("input[name=updates]", "lots")
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("updates must be a number")
    expect(page.locator("input[name=updates]")).to_have_attribute("aria-invalid", "true")
    expect(rows).to_have_count(len(keys))  # the last good answer stays, dimmed

    page.fill("input[name=updates]", "1,000")
    expect(error).to_be_hidden()
    expect(page.locator("#results")).not_to_have_class(re.compile(r"\bstale\b"))


IMAGE_HOST = "https://images.example"
"""Where the test flow's image is: Reply.of takes https URLs only (and the page's policy shows
https images only), so the browser's requests to this made-up host are answered by the
ImageServer on loopback, through Playwright's routing: the image really is fetched."""


@pytest.fixture
def images(page: Page) -> Iterator[ImageServer]:
    server = ImageServer()
    with serve(server.app()) as url:
        server.url = url

        def from_loopback(route: Route) -> None:
            path = route.request.url.removeprefix(IMAGE_HOST)
            route.fulfill(response=route.fetch(url=f"{url}{path}"))

        page.route(f"{IMAGE_HOST}/**", from_loopback)
        yield server


@on_sqlite
def test_rich_replies_in_the_browser(
    start_bot: BotFactory, page: Page, images: ImageServer
) -> None:
    bot = start_bot(flow=rich_flow(f"{IMAGE_HOST}/cat.png"))
    dialogs: list[str] = []

    def dialog_opened(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dialog_opened)
    page.goto(f"{bot.base_url}/")
    replies = page.locator("#log .reply")

    def say(text: str) -> None:
        before = replies.count()
        page.fill("#text", text)
        page.press("#text", "Enter")
        expect(replies).to_have_count(before + 1)

    # A person's markup is shown as the text it is, in bold; nothing of it runs.
    say("<script>alert(1)</script><img src=x onerror=alert(2)>")
    bold = replies.last.locator(".msg.bot b")
    expect(bold).to_have_text("<script>alert(1)</script><img src=x onerror=alert(2)>")
    assert page.locator("#log script, #log img").count() == 0

    # An image, its text as its caption and alt text, fetched from the image server.
    say("/cat")
    image = replies.last.locator("img")
    expect(image).to_have_attribute("alt", "A cat")
    expect(image).to_have_attribute("loading", "lazy")
    # (A function, not a string: the page's policy refuses to evaluate strings.)
    loaded = """img => img.complete ? img.naturalWidth : new Promise(done => {
        img.addEventListener("load", () => done(img.naturalWidth));
        img.addEventListener("error", () => done(0));
    })"""
    assert image.evaluate(loaded) == 1  # ImageServer's PNG is one pixel
    assert images.fetches("/cat.png") == 1
    expect(replies.last.locator(".msg.bot")).to_have_text("A cat")

    # A menu: payload buttons are buttons, a URL button a link to a new tab.
    say("/menu")
    menu = replies.last
    expect(menu.locator(".msg.bot")).to_have_text("Pick a size")
    keys = menu.locator("button.key")
    expect(keys).to_have_text(["Small", "Large"])
    docs = menu.locator("a.key")
    expect(docs).to_have_text("Docs")
    expect(docs).to_have_attribute("href", "https://example.com/docs?a=1&b=2")
    expect(docs).to_have_attribute("target", "_blank")
    expect(docs).to_have_attribute("rel", "noopener noreferrer")

    # By keyboard: from the input back through Docs and Large to Small, then Enter.
    page.focus("#text")
    for _ in range(3):
        page.keyboard.press("Shift+Tab")
    small = keys.first
    expect(small).to_be_focused()
    outline = small.evaluate("b => b.matches(':focus-visible') && getComputedStyle(b).outlineStyle")
    assert outline == "solid"
    page.keyboard.press("Enter")

    # The edit replaces the menu's bubble (and its buttons) where it was; the notice is a toast.
    toast = page.locator("#toast[role=status]")
    expect(toast).to_have_text("Saved")
    expect(toast).to_be_visible()
    expect(replies).to_have_count(4)
    expect(replies.nth(2).locator(".msg.bot")).to_have_text("Size s it is")
    expect(replies.nth(2).locator("code")).to_have_text("s")
    assert replies.nth(2).locator(".key").count() == 0
    expect(replies.nth(3).locator(".msg.bot")).to_have_text("Anything else?")
    expect(page.locator(".msg.bot", has_text="Pick a size")).to_have_count(0)
    expect(toast).to_be_hidden(timeout=8_000)  # shown for a few seconds

    # Space presses too; while the press is in flight its buttons are disabled.
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route("**/webhooks/web", hold)
    again = replies.nth(3).locator("button.key")
    again.focus()
    page.keyboard.press(" ")
    expect(again).to_be_disabled()
    # The page disables the buttons before Playwright hands the request to `hold`: wait for it.
    deadline = time.monotonic() + 10
    while not held:
        assert time.monotonic() < deadline, "the press never reached /webhooks/web"
        page.wait_for_timeout(10)  # lets Playwright deliver its events meanwhile
    assert len(held) == 1
    again.dispatch_event("click")  # a second press of a disabled button: nothing is sent
    held[0].continue_()
    expect(replies).to_have_count(5)
    page.unroute("**/webhooks/web")
    expect(replies.last.locator(".msg.bot")).to_have_text("Pressed again")
    expect(again).to_be_enabled()  # not an edit: the bubble and its buttons stay
    assert len(held) == 1 and dialogs == []


@on_sqlite
def test_a_message_in_the_inbox_appears_on_the_page_once(
    start_bot: BotFactory, page: Page, database_url: str
) -> None:
    bot = start_bot(flow=rich_flow())
    page.goto(f"{bot.base_url}/")
    replies = page.locator("#log .reply")
    page.fill("#text", "hello")
    page.press("#text", "Enter")
    expect(replies).to_have_count(1)
    order = Reply.of("Your ", bold("order"), " is ready", buttons=[[Button("Pick up", "pickup")]])
    put(database_url, visitor_id(database_url), order)

    # The visitor does nothing: the page's polling (every 5 s while visible) brings it.
    expect(replies).to_have_count(2, timeout=20_000)
    told = replies.last
    expect(told.locator(".msg.bot")).to_have_text("Your order is ready")
    expect(told.locator(".msg.bot b")).to_have_text("order")
    keys = told.locator("button.key")
    expect(keys).to_have_text(["Pick up"])

    # Shown once: the next collection brings nothing, and the page still shows it once.
    with page.expect_response(
        lambda r: r.url.endswith("/webhooks/web/inbox"), timeout=40_000
    ) as next_poll:
        pass
    assert next_poll.value.json() == {"replies": [], "texts": []}
    expect(page.locator(".msg.bot", has_text="Your order is ready")).to_have_count(1)

    # Its button presses like a reply's.
    keys.first.click()
    expect(replies).to_have_count(3)
    expect(replies.last.locator(".msg.bot")).to_have_text("Pressed pickup")


VISIBILITY = """
let hidden = false;
Object.defineProperty(Document.prototype, "visibilityState", {
  configurable: true, get: () => (hidden ? "hidden" : "visible"),
});
window.setHiddenForTest = value => {
  hidden = value;
  document.dispatchEvent(new Event("visibilitychange"));
};
"""
"""The page's visibility as the test says (a headless tab is always visible), and the event a
browser sends when it changes."""


@on_sqlite
def test_a_hidden_page_does_not_poll_and_collects_when_shown(
    start_bot: BotFactory, page: Page, database_url: str
) -> None:
    bot = start_bot()
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if r.url.endswith("/inbox") else None)
    page.add_init_script(VISIBILITY)
    page.clock.install()  # the page's timers run when the test says
    replies = page.locator("#log .reply")
    with page.expect_response(lambda r: r.url.endswith("/webhooks/web/inbox")):
        page.goto(f"{bot.base_url}/")  # it collects once at once
    page.fill("#text", "hello")
    page.press("#text", "Enter")
    expect(replies).to_have_count(1)

    page.evaluate("hidden => window.setHiddenForTest(hidden)", True)
    before = len(polls)
    put(database_url, visitor_id(database_url), "While you were away")
    page.clock.run_for(120_000)  # two minutes hidden: no poll
    expect(replies).to_have_count(1)

    # Shown again: collected at once, without waiting for the next poll.
    page.evaluate("hidden => window.setHiddenForTest(hidden)", False)
    expect(replies).to_have_count(2)
    expect(replies.last).to_have_text("While you were away")
    assert len(polls) == before + 1, polls
