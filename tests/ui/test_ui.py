"""The web UI in a real browser: headless Chromium (Debian's) driven by
Playwright, against `weir serve` on loopback with the digits example
published. Run by tests/ui/run.sh, which starts the server and passes its
address, two tenants' tokens and the folder for screenshots."""

import json
import re
import sys
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

BASE, ALICE, BOB, SHOTS = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
SHOTS.mkdir(parents=True, exist_ok=True)

# Records every class a graph node takes, to show the graph went from
# running to done on the page itself (the log survives only without a reload).
WATCH_NODES = """
window.__loads = (window.__loads || 0) + 1;
window.__seen = {};
document.addEventListener("DOMContentLoaded", () => {
  const note = (node) => {
    const step = node.dataset && node.dataset.step;
    if (!step) return;
    (window.__seen[step] = window.__seen[step] || []).push(node.getAttribute("class"));
  };
  new MutationObserver((changes) => {
    for (const change of changes) if (change.target.matches && change.target.matches("a.node")) note(change.target);
  }).observe(document.body, { attributes: true, subtree: true, attributeFilter: ["class"] });
});
"""


def shot(page, name):
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page, token, path):
    page.goto(BASE + path)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.fill("#token", token)
    page.click("form.login button[type=submit]")


def trigger(page, epochs):
    page.goto(BASE + "/pipelines/digits")
    page.fill("#param-epochs", str(epochs))
    page.click("#trigger-form button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/[0-9]{8}T"))
    return page.url.rsplit("/", 1)[1]


def run_status_from_api(run):
    """What the API says of `run`: its status and each step's, for a failure message."""
    request = urllib.request.Request(f"{BASE}/v1/runs/{run}", headers={"Authorization": f"Bearer {ALICE}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        document = json.load(response)
    return document.get("status"), {step.get("step"): step.get("status") for step in document.get("steps", [])}


def main():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        # Requests that changed something or failed, for failure messages.
        requests = []
        page.on("request", lambda request: request.method == "POST" and requests.append(f"POST {request.url}"))
        page.on("requestfailed", lambda request: requests.append(f"failed {request.method} {request.url}"))

        # A page without a session goes to the login, then back.
        sign_in(page, ALICE, "/pipelines/digits")
        expect(page).to_have_url(BASE + "/pipelines/digits")
        shot(page, "pipeline")

        # The form refuses a value of the wrong type before sending it.
        page.fill("#param-epochs", "1.5")
        page.click("#trigger-form button[type=submit]")
        expect(page.locator("#param-epochs")).to_have_attribute("aria-invalid", "true")
        expect(page.locator(".field:has(#param-epochs) .field-error")).to_contain_text("not an integer")
        expect(page).to_have_url(BASE + "/pipelines/digits")

        first = trigger(page, 60)
        expect(page.locator("#run-status .s-succeeded")).to_be_visible(timeout=120_000)

        # A run with a changed parameter, watched live: no reload. Training
        # for 600 epochs takes about a second, so the page (which notes class
        # changes only) is loaded before train starts and sees it running.
        page.add_init_script(WATCH_NODES)
        second = trigger(page, 600)
        expect(page.locator("#run-status .s-succeeded")).to_be_visible(timeout=120_000)
        expect(page.locator("a.node[data-step=train]")).to_have_attribute("class", "node s-ran")
        loads = page.evaluate("window.__loads")
        seen = page.evaluate("window.__seen")
        assert loads == 1, f"the run page was reloaded ({loads} loads)"
        assert "node s-running" in seen.get("train", []), f"train never showed running: {seen}"
        assert seen["train"][-1] == "node s-ran", seen
        expect(page.locator("#steps tbody tr")).to_have_count(5)
        expect(page.locator(".timeline")).to_be_visible()
        shot(page, "run")

        # Arrow keys move between the graph's steps.
        page.focus("a.node[data-step=train]")
        page.keyboard.press("ArrowRight")
        focused = page.evaluate("document.activeElement.dataset.step")
        assert focused in ("evaluate", "score"), f"ArrowRight from train focused {focused!r}"
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/steps/(evaluate|score)$"))

        # A step: its logs, outputs with downloads, metric chart, why it ran.
        page.goto(f"{BASE}/runs/{second}/steps/train")
        expect(page.locator("h1")).to_contain_text("train")
        expect(page.locator("#stdout")).to_be_attached()
        expect(page.locator("figure.chart figcaption", has_text="loss")).to_be_visible()
        expect(page.locator("figure.chart polyline")).to_have_count(1)
        expect(page.locator("ul.reasons li").first).to_contain_text("epochs")
        with page.expect_download() as download:
            page.click("a[download=model]")
        assert Path(download.value.path()).stat().st_size > 0
        shot(page, "step")

        # Compare with the first run.
        page.goto(f"{BASE}/runs/{second}")
        page.click("text=Compare with…")
        page.select_option("select[name=b]", first)
        page.click("form.filters button[type=submit]")
        expect(page.locator("#param-diff")).to_contain_text("epochs")
        expect(page.locator("#param-diff")).to_contain_text("60")
        expect(page.locator("#step-diff tr.differs", has_text="train")).to_contain_text("epochs")
        expect(page.locator("#metric-diff")).to_contain_text("evaluate.accuracy")
        shot(page, "compare")

        page.goto(f"{BASE}/metrics?pipeline=digits&metric=evaluate.accuracy")
        expect(page.locator("figure.chart.wide polyline")).to_have_count(1)
        shot(page, "metrics")
        page.goto(BASE + "/")
        expect(page.locator("table.runs tbody tr")).to_have_count(2)
        expect(page.locator("table.runs")).to_contain_text("evaluate.accuracy")
        shot(page, "runs")
        model = page.goto(f"{BASE}/runs/{second}/steps/train")
        page.click("text=lineage >> nth=1")
        expect(page.locator("#lineage")).to_contain_text("train")
        expect(page.locator("#lineage")).to_contain_text("pipeline input")
        shot(page, "lineage")

        # A long run, cancelled from its page.
        long_run = trigger(page, 400_000)
        expect(page.locator("a.node[data-step=train]")).to_have_attribute("class", "node s-running", timeout=60_000)
        page.click("button.danger")
        try:
            expect(page.locator("#run-status .s-cancelled")).to_be_visible(timeout=60_000)
        except AssertionError:
            print(f"ui: cancelling {long_run}: the page is {page.url}; the API says {run_status_from_api(long_run)}; "
                  f"last requests: {requests[-5:]}; page errors: {errors}", file=sys.stderr)
            raise
        shot(page, "cancelled")

        # The designer: open, add a step, wire it by dragging, save, run.
        page.goto(BASE + "/pipelines/digits/designer")
        expect(page.locator("#canvas svg")).to_be_visible()
        page.fill("#new-step-name", "recheck")
        page.select_option("#new-step-module", "build/evaluate.wasm")
        page.click("#add-step-button")
        expect(page.locator(".card[data-card=recheck]")).to_be_visible()

        def drag(source, step):
            start = page.locator(f".port.out[data-source='{source}'] circle")
            end = page.locator(f".port.in[data-step='{step}'][data-input='+'] circle")
            start.scroll_into_view_if_needed()
            a = start.bounding_box()
            page.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
            page.mouse.down()
            end.scroll_into_view_if_needed()
            b = end.bounding_box()
            page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=10)
            page.mouse.up()

        drag("train.model", "recheck")
        expect(page.locator(".port.in[data-step=recheck][data-input=model]")).to_be_attached()
        # Until its output is declared, the engine's complaint is on the card.
        drag("data.test", "recheck")
        expect(page.locator(".port.in[data-step=recheck][data-input=test]")).to_be_attached()
        # What is typed into one field survives another field's edit, which
        # redraws the panel.
        page.fill("#new-output-name", "confusion")
        page.fill("#step-natives", "gemm")
        page.click("#set-natives")
        # The recheck step's own line: train's `natives = ["gemm"]` matched at
        # once, so the add-output below raced the natives edit's re-render.
        expect(page.locator("#manifest")).to_have_value(re.compile(r'\[steps\.recheck\][^\[]*natives = \["gemm"\]'))
        expect(page.locator("#new-output-name")).to_have_value("confusion")
        expect(page.locator("#step-natives")).to_have_value("gemm")
        page.click("#add-output")
        expect(page.locator(".port.out[data-source='recheck.confusion']")).to_be_attached()
        expect(page.locator("#problems li.none")).to_be_visible()
        expect(page.locator("#manifest")).to_have_value(re.compile(r'\[steps\.recheck\]\nmodule = "build/evaluate\.wasm"'))
        shot(page, "designer")
        page.click("#save")
        expect(page.locator("#save-result a")).to_have_text("version 2")
        page.click("#save-result a")
        expect(page).to_have_url(BASE + "/pipelines/digits?version=2")
        page.click("#trigger-form button[type=submit]")
        page.wait_for_url(re.compile(r"/runs/"))
        expect(page.locator("#run-status .s-succeeded")).to_be_visible(timeout=120_000)
        expect(page.locator("#steps tbody tr[data-step=recheck]")).to_be_visible()
        shot(page, "designed-run")

        # A narrow screen: nothing wider than the viewport but the graph's own scroller.
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{BASE}/runs/{second}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the run page is {width}px wide on a 390px screen"
        shot(page, "run-narrow")

        # Another tenant: alice's run is a 404; signing out ends the session.
        other = browser.new_context().new_page()
        sign_in(other, BOB, f"/runs/{second}")
        expect(other.locator("h1")).to_contain_text("404")
        shot(other, "other-tenant")
        page.set_viewport_size({"width": 1280, "height": 800})
        page.click("form.signout button")
        expect(page).to_have_url(BASE + "/login")
        page.goto(f"{BASE}/runs/{second}")
        expect(page).to_have_url(re.compile(r"/login\?next="))

        assert not errors, f"the pages logged errors: {errors}"
        browser.close()
        print(f"ui: every check passed; runs {first} {second} {long_run}; screenshots in {SHOTS}")


main()
