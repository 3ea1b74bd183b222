"""The agent desk in a real Chromium (Debian's, driven by Playwright), on every runtime.

An agent on the phone signs in with an API key, presses "/" and types the caller's number
as people say it (national format, spaces); the card opens on Enter. The card shows who
they are (a hostile name from a web form rendered as text, never run), their consents,
lifecycle, value and the contact proposed with why; the agent clicks an outcome button
and records the call, and the card shows both at once; a web form posted meanwhile by another client appears
on the open card without a reload. The tests write screenshots of what the agent sees
(docs/screenshots/, shown in docs/DESK.md). The session is an HttpOnly,
SameSite=Strict cookie that holds no key; a form posted without its CSRF token, or with
a read-only key, records nothing.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.api import Api, consent, purchase, touchpoint, unique

pytestmark = [pytest.mark.e2e]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
HOSTILE = '<img src=x onerror="document.title=\'owned\'"><script>document.title="owned"</script>'


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM, "Chromium is missing: `make services` installs Debian's chromium package"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def _root(api: Api) -> str:
    return str(api.client.base_url).rstrip("/")


def _page(browser: Browser, api: Api) -> Page:
    context = browser.new_context(base_url=str(api.client.base_url), viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.on("dialog", lambda dialog: pytest.fail(f"a page opened a dialog: {dialog.message}"))
    return page


def _sign_in(page: Page, key: str) -> None:
    page.goto("/desk")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Search customers")).to_be_visible()


def _caller(api: Api, tag: str) -> tuple[str, str, dict[str, Any]]:
    """A customer who bought two hours ago and just asked to be called back (the default
    rules' call_back trigger: no consent needed, no quiet hours)."""
    now = datetime.now(UTC).replace(microsecond=0)
    digits = "".join(str(int(c, 16) % 10) for c in tag[-8:])
    phone = f"+336{digits}"
    who = {"phones": [phone], "emails": [f"{tag}@example.com"]}
    form = touchpoint("web_form", f"{tag}-form", now - timedelta(minutes=1), customer=who, channel="web", form_id="contact",
                      fields={"first_name": HOSTILE, "message": "please call me back"})
    answer = api.ingest([consent(f"{tag}-consent", now - timedelta(days=1), who, consent_channel="email",
                                 purpose="marketing", status="granted"),
                         purchase(f"{tag}-buy", now - timedelta(hours=2), who, order_id=f"{tag}-o", amount="120.00"),
                         form])
    customer = api.find(email=f"{tag}@example.com", min_position=answer["position"])["customer_id"]
    return customer, phone, who


def test_an_agent_finds_the_caller_as_typed_records_the_outcome_and_the_call(api: Api, browser: Browser) -> None:
    tag = unique()
    customer, phone, _ = _caller(api, tag)
    page = _page(browser, api)
    _sign_in(page, api.runtime.keys.admin)

    # the session cookie: HttpOnly, SameSite=Strict, scoped to /desk, and not the key
    [cookie] = [c for c in page.context.cookies() if c["name"] == "touchstream_desk"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/desk"
    assert api.runtime.keys.admin not in cookie["value"]

    # "/" focuses the search; the number as an agent types it, in national format with spaces
    page.locator("body").press("/")
    national = "0" + phone[3:]
    page.keyboard.type(" ".join(national[i:i + 2] for i in range(0, len(national), 2)), delay=10)
    expect(page.locator("#results a")).to_have_count(1)
    expect(page.locator("#results")).to_contain_text(f"{tag}@example.com")
    if api.runtime.name == "embedded":
        page.screenshot(path=SCREENSHOTS / "desk-search.png")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{_root(api)}/desk/customers/{customer}")

    card = page.locator("article.card")
    expect(card.get_by_role("heading", name=f"{tag}@example.com")).to_be_visible()
    expect(card).to_contain_text(HOSTILE)  # the name as text: nothing it holds ran
    assert page.title() != "owned" and page.locator("article img").count() == 0
    # what the HTTP API returns for the same customer
    view = api.customer(customer)
    expect(card.locator(".consent-granted")).to_have_text(view["consents"][0]["status"])
    expect(card.locator(".stage").first).to_have_text(view["lifecycle"]["stage"])
    expect(card.locator('[data-part="identity"]')).to_contain_text(", ".join(view["identity"]["phones"]))
    expect(card.locator('[data-part="value"]')).to_contain_text(view["value"]["historical"]["revenue"])
    expect(card).to_contain_text("Revenue")
    # a touchpoint from another channel, posted by another client: on the open card, no reload
    page.evaluate("window.__same_page = true")
    api.ingest(touchpoint("web_form", f"{tag}-later", datetime.now(UTC), customer={"emails": [f"{tag}@example.com"]},
                          channel="web", form_id="newsletter", fields={"message": "subscribe me"}))
    expect(card.locator(f'tr[data-event="{tag}-later"]')).to_be_visible(timeout=10_000)
    assert page.evaluate("window.__same_page === true")  # the page was not reloaded
    trigger = card.locator(".trigger").first
    expect(trigger).to_contain_text("call_back")
    trigger.get_by_text("Why").click()
    expect(trigger).to_contain_text("form_id: contact")

    # the outcome button posts a call carrying the trigger's id; the card shows it at once
    trigger.get_by_role("button", name="Reached", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("The outcome was recorded.")
    expect(card.locator(".trigger").first).to_contain_text("outcome: reached")
    view = api.customer(customer)
    assert view["next_best_contact"]["triggers"][0]["outcome"] == "reached"

    # recording the call through the same ingest: read back at once, in the timeline
    page.get_by_label("Reason").fill("delivery date")
    page.get_by_label("Outcome", exact=True).select_option("callback_requested")
    page.get_by_label("minutes").fill("3")
    page.get_by_role("button", name="Record the call").click()
    expect(page.get_by_role("status")).to_have_text("The call was recorded.")
    expect(page.locator("table.timeline")).to_contain_text("reason: delivery date")
    page.get_by_label("Type").select_option("call")
    expect(page).to_have_url(f"{_root(api)}/desk/customers/{customer}?channel=&kind=call")
    expect(page.locator("table.timeline tbody tr")).to_have_count(2)  # the outcome's call and this one
    if api.runtime.name == "embedded":
        page.get_by_label("Type").select_option("")
        expect(page.locator("table.timeline tbody tr")).to_have_count(6)
        page.screenshot(path=SCREENSHOTS / "desk-card.png", full_page=True)

    # the portfolio: charts with their figures, the same as the analytics API's
    page.get_by_role("link", name="Portfolio").click()
    expect(page.get_by_role("heading", name="Portfolio", exact=True)).to_be_visible()
    stages = api.get("/v1/analytics/lifecycle").json()["stages"]
    funnel = page.get_by_role("img", name="Customers per lifecycle stage")
    for stage, count in stages.items():
        expect(funnel).to_contain_text(re.compile(rf"\b{stage}\s+{count}\b"))
    expect(page.get_by_role("img", name="RFM grid", exact=False)).to_be_visible()
    rules = {(r["rule"], r["fired"]) for r in api.get("/v1/analytics/triggers").json()["rules"]}
    table = page.locator('[aria-labelledby="h-rules"] table')
    for rule, fired in rules:
        expect(table.locator("tr", has_text=rule).first).to_contain_text(str(fired))
    page.get_by_label("From").fill("2026-01-01")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"from=2026-01-01"))
    if api.runtime.name == "embedded":
        page.screenshot(path=SCREENSHOTS / "desk-portfolio.png", full_page=True)
    calls = [e for e in api.timeline(customer) if e["type"] == "call"]
    assert {(e["reason"], e["outcome"], e["duration_seconds"]) for e in calls if e.get("reason")} == {
        ("delivery date", "callback_requested", 180)}


def test_the_desk_refuses_what_a_session_may_not_do(api: Api, browser: Browser) -> None:
    tag = unique()
    customer, _, _ = _caller(api, tag)
    page = _page(browser, api)
    page.goto("/desk")
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown")
    assert page.goto(f"/desk/customers/{customer}").url.endswith("/desk")  # not signed in: the sign-in page

    _sign_in(page, api.runtime.keys.read)  # a read key looks, and records nothing
    page.goto(f"/desk/customers/{customer}")
    expect(page.locator("article.card")).to_contain_text(f"{tag}@example.com")
    expect(page.get_by_role("button", name="Record the call")).to_have_count(0)
    expect(page.get_by_role("button", name="Reached", exact=True)).to_have_count(0)
    refused = page.request.post(f"/desk/customers/{customer}/calls", form={"reason": "x", "outcome": "reached",
                                                                             "csrf": "forged"})
    assert refused.status == 403
    before = len(api.timeline(customer))

    page = _page(browser, api)  # another agent, with every scope
    _sign_in(page, api.runtime.keys.admin)
    forged = page.request.post(f"/desk/customers/{customer}/calls", form={"reason": "x", "outcome": "reached"})
    assert forged.status == 403  # no CSRF token: nothing recorded
    other_site = page.request.post(f"/desk/customers/{customer}/calls", form={"reason": "x", "outcome": "reached"},
                                   headers={"Origin": "https://evil.example"})
    assert other_site.status == 403
    assert len(api.timeline(customer)) == before
    page.goto("/desk/customers/nobody-" + tag)
    expect(page.get_by_role("heading", name="No such customer")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert not [c for c in page.context.cookies() if c["name"] == "touchstream_desk"]
