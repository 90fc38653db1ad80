"""The chat UI in a real headless Chromium (Playwright): key prompt, streamed answers side by side, feedback stored.

Needs ``pip install playwright`` (the wheel bundles its driver; no ``playwright install``) and Debian's
Chromium (``apt-get install -y chromium``); without either the test fails, naming the fix. Set
``COMPACTLM_UI_SCREENSHOT=PATH`` to keep the test's screenshot (its untrained models answer in stray bytes;
the README's docs/img/chat-ui.png shows the demo champion instead).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from compactlm.config import ServeConfig
from compactlm.serving.engine.loading import load_model
from compactlm.serving.http.app import create_app
from compactlm.serving.traffic import TrafficStore

CHROMIUM = os.environ.get("COMPACTLM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
KEYS = {"champion": "ui-key-champion", "challenger": "ui-key-challenger"}
QUESTION = "Where is my order?"
XSS = '<img src=x onerror="window.__xss = 1">'


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is missing: pip install playwright (the wheel bundles its driver; "
                    "do not run `playwright install`)", pytrace=False)
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set COMPACTLM_CHROMIUM)",
                    pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def two_servers(tmp_path, tiny_model_dir, make_decoder, tokenizer, start_server):
    """Champion (version 7) and challenger (version 8, other weights), each with its key, store and peer."""
    challenger_dir = tmp_path / "challenger"
    make_decoder(seed=1).save_pretrained(challenger_dir)
    tokenizer.save_pretrained(challenger_dir)
    ports = {"champion": _free_port(), "challenger": _free_port()}
    origins = {role: f"http://127.0.0.1:{port}" for role, port in ports.items()}
    servers = {}
    for role, folder, version in (("champion", tiny_model_dir, "7"), ("challenger", challenger_dir, "8")):
        store = TrafficStore.open(f"sqlite:///{tmp_path / f'{role}.db'}")
        peer = origins["challenger" if role == "champion" else "champion"]
        config = ServeConfig(model_dir=str(folder), threads=0, max_new_tokens=12, max_batch_size=2, ui_peers=[peer])
        loaded = load_model(model_dir=folder, max_batch_size=2)
        loaded.version = version  # as if loaded from models:/<name>/<version>
        live = start_server(create_app(config, [KEYS[role]], preloaded=loaded, traffic=store), ports[role])
        live.store, live.model_id = store, loaded.model_id
        servers[role] = live
    return servers


def _enter_keys(page, servers) -> None:
    """Answer the page's key prompts (one per server, in whatever order the 401s came)."""
    for _ in servers:
        page.wait_for_selector("#key-form:not([hidden])", timeout=10_000)
        prompt = page.text_content("#key-prompt")
        role = next(r for r, live in servers.items() if live.url in prompt)
        page.fill("#key-input", KEYS[role])
        page.click("#key-form button")
        page.wait_for_function(f"sessionStorage.getItem('compactlm-api-key:{servers[role].url}') !== null")


def _feedback_row(store: TrafficStore, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = store.feedback()
        if rows:
            return rows[-1]
        time.sleep(0.05)
    raise AssertionError("no feedback stored")


def test_chat_compare_and_feedback_in_a_real_browser(browser, two_servers, tmp_path):
    champion, challenger = two_servers["champion"], two_servers["challenger"]
    page = browser.new_page(viewport={"width": 1280, "height": 760})
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" and "401" not in m.text
            and not m.location.get("url", "").endswith("/favicon.ico") else None)  # 401: before the key
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(f"{champion.url}/ui?challenger={challenger.url}")
    _enter_keys(page, two_servers)
    page.wait_for_selector("#key-form", state="hidden")
    for role, live in two_servers.items():
        page.wait_for_selector(f".panel[data-role={role}] h2 .model:text('{live.model_id}')", timeout=10_000)

    # Count the answer's updates while it streams: more than one text change means it arrived in pieces.
    page.evaluate("""() => { window.__updates = 0; new MutationObserver(() => window.__updates++)
        .observe(document.getElementById('panels'), {subtree: true, childList: true, characterData: true}); }""")
    page.fill("#question", QUESTION)
    page.click("#ask")
    turns = {role: page.wait_for_selector(f".panel[data-role={role}] .turn.done", timeout=20_000)
             for role in two_servers}
    answers = {role: turn.query_selector(".answer").text_content() for role, turn in turns.items()}
    assert all(answers.values()), answers
    assert page.evaluate("window.__updates") > 4  # turns added, then several streamed deltas
    response_id = turns["champion"].get_attribute("data-response-id")
    assert response_id.startswith("chatcmpl-")
    assert turns["champion"].query_selector(".question").text_content() == QUESTION

    champion_turn = turns["champion"]
    champion_turn.query_selector("button.down").click()
    champion_turn.query_selector(".corrected").fill("It ships tomorrow.")
    champion_turn.query_selector(".reason").fill("too vague")
    champion_turn.query_selector(".correction button").click()
    page.wait_for_selector(".panel[data-role=champion] .status:has-text('stored')", timeout=10_000)
    turns["challenger"].query_selector("button.up").click()
    assert not turns["challenger"].query_selector(".correction").is_visible()  # a thumbs-up asks nothing more
    page.wait_for_selector(".panel[data-role=challenger] .status:has-text('stored')", timeout=10_000)

    screenshot = tmp_path / "chat-ui.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("COMPACTLM_UI_SCREENSHOT"):
        target = Path(os.environ["COMPACTLM_UI_SCREENSHOT"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, target)

    down = _feedback_row(champion.store)
    assert down["request_id"] == response_id.removeprefix("chatcmpl-") and down["rating"] == -1
    assert down["corrected_answer"] == "It ships tomorrow." and down["reason"] == "too vague"
    assert down["prompt"] == QUESTION and down["source"] == "ui"  # the server keeps no prompt text by default
    assert down["request_model_version"] == "7" and down["request_route"] == "/v1/chat/completions"
    assert champion.store.request(down["request_id"])["stream"]
    up = _feedback_row(challenger.store)
    assert up["rating"] == 1 and up["request_model_version"] == "8" and up["prompt"] == QUESTION
    assert up["request_id"] == turns["challenger"].get_attribute("data-response-id").removeprefix("chatcmpl-")
    assert not problems, problems  # no script error, no CSP violation

    # Untrusted text stays text: an answer (champion) and an error (challenger) carrying markup.
    chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {
        "content": XSS}, "finish_reason": None}]}
    page.route(f"{champion.url}/v1/chat/completions", lambda route: route.fulfill(
        status=200, content_type="text/event-stream", body=f"data: {json.dumps(chunk)}\r\n\r\ndata: [DONE]\r\n\r\n"))
    page.route(f"{challenger.url}/v1/chat/completions", lambda route: route.fulfill(
        status=400, content_type="application/json", headers={"access-control-allow-origin": champion.url},
        body=json.dumps({"error": {"message": f"bad {XSS}", "type": "invalid_request_error"}})))
    page.fill("#question", "Show me a picture")
    page.click("#ask")
    fake = page.wait_for_selector(".panel[data-role=champion] .turn.done >> nth=1", timeout=10_000)
    failed = page.wait_for_selector(".panel[data-role=challenger] .turn.failed", timeout=10_000)
    assert fake.query_selector(".answer").text_content() == XSS
    assert failed.query_selector(".answer .error").text_content() == f"400: bad {XSS}"
    assert page.query_selector_all("#panels img") == [] and page.evaluate("window.__xss") is None
    page.close()
