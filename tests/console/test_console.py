"""The operators' console in a real browser: what an operator sees and clicks, end to end."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.console.conftest import API_KEY
from tests.engines import TINY_REPO

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

STAY_MARK = "window.__sameDocument = 'yes'"  # survives only as long as the page is not reloaded


def on_same_document(console) -> bool:
    return console.page.evaluate("window.__sameDocument") == "yes"


def progress_of(console, row):
    return float(row.locator("progress").get_attribute("value") or 0)


def search_and_download(console, query: str, model_id: str):
    console.open("/admin/catalog/catalogmodel/search/")
    console.page.fill("#id_query", query)
    console.page.select_option("#id_source", "huggingface")
    console.page.click("#catalog-search input[type=submit]")
    row = console.page.locator(f'#search-results tr[data-model-id="{model_id}"]')
    row.get_by_role("button", name="Download").click()
    console.page.wait_for_url("**/admin/downloads/downloadtask/")
    assert f"Download of {model_id} started" in console.message()
    return console.page.locator("#result_list tbody tr", has_text=model_id)


def test_dashboard_figures_refresh_in_place_and_the_key_stays_out_of_the_page(console, console_service):
    page = console.page
    page.evaluate(STAY_MARK)
    page.wait_for_function("Number(document.getElementById('dashboard').dataset.refreshes) >= 2", timeout=15_000)
    health = page.locator('[data-figure="health"]')
    expect(health).not_to_have_text("…")
    # The database and the worker cluster answer (disk and memory depend on the machine the tests run on).
    expect(health).not_to_contain_text("workers:", timeout=30_000)
    expect(health).not_to_contain_text("database:")
    assert "cores" in page.locator('[data-figure="cpu"]').inner_text()
    assert " GB" in page.locator('[data-figure="memory"]').inner_text()
    assert "free" in page.locator('[data-figure="disk"]').inner_text()
    assert page.locator('[data-figure="gpus"]').inner_text() == "none detected"
    assert "ollama" in page.locator('[data-figure="catalog"]').inner_text()  # the seeded library models
    assert on_same_document(console)
    assert API_KEY not in page.content()
    # The API itself still wants the key from anyone without the operator's session.
    assert httpx.get(f"{console_service.url}/api/system/resources").status_code == 401
    assert console.errors == []


def test_search_favorite_and_model_info(console):
    console.open("/admin/catalog/catalogmodel/search/")
    console.page.fill("#id_query", "DialoGPT")
    console.page.click("#catalog-search input[type=submit]")
    row = console.page.locator('#search-results tr[data-model-id="microsoft/DialoGPT-medium"]')
    row.get_by_role("button", name="☆ Favorite").click()
    assert "/DialoGPT-medium is a favorite" in console.message()
    row = console.page.locator('#search-results tr[data-model-id="microsoft/DialoGPT-medium"]')
    assert row.get_by_role("button", name="★ Unfavorite").is_visible()
    # The favorites filter, as /api/models/search?favorite=true.
    console.page.fill("#id_query", "")
    console.page.check("#id_favorite")
    console.page.click("#catalog-search input[type=submit]")
    favorites = console.page.locator("#search-results tbody tr[data-model-id]")
    expect(favorites).to_have_count(1)
    assert favorites.get_attribute("data-model-id") == "microsoft/DialoGPT-medium"
    row = console.page.locator('#search-results tr[data-model-id="microsoft/DialoGPT-medium"]')
    row.get_by_role("link", name="microsoft/DialoGPT-medium").click()
    info = console.page.locator("#model-info")
    assert "A conversational response generation model" in info.inner_text()
    assert info.locator("tr", has_text="Favorite").inner_text().endswith("yes · no")
    assert console.page.locator("td", has_text="pytorch_model.bin").count() == 1
    # An unknown model is a message on the search page, not an error page.
    console.open("/admin/catalog/catalogmodel/model/?model_id=nobody/nothing&source=huggingface")
    assert "not found" in console.message("error")
    assert console.errors == []


def test_download_progress_moves_live_and_pauses_and_resumes_from_the_page(console, console_service, fake_hub):
    fake_hub.bytes_per_second = 256 * 1024  # 8 MiB in four parts: about eight seconds
    try:
        row = search_and_download(console, "big-model", "test-org/big-model")
        console.page.evaluate(STAY_MARK)
        assert console.page.locator("#download-live").get_attribute("data-connected") in ("true", "false")
        console.page.wait_for_function("document.getElementById('download-live').dataset.connected === 'true'")
        first = console.page.wait_for_function(
            "() => { const bar = document.querySelector('#result_list progress'); return bar.value > 0 && bar.value; }"
        ).json_value()
        console.page.wait_for_function(f"document.querySelector('#result_list progress').value > {first}")
        assert on_same_document(console)
        assert "/s" in row.locator("[data-speed-for]").inner_text()
        assert row.locator("[data-eta-for]").inner_text() != "-"

        row.get_by_role("button", name="Pause").click()
        assert "pause done" in console.message()
        row = console.page.locator("#result_list tbody tr", has_text="test-org/big-model")
        assert row.locator("[data-status-for]").inner_text() == "paused"
        assert row.get_by_role("button", name="Pause").is_disabled()
        paused_at = progress_of(console, row)
        assert paused_at < 100

        row.get_by_role("button", name="Resume").click()
        assert "resume done" in console.message()
        console.page.evaluate(STAY_MARK)
        fake_hub.bytes_per_second = 2 * 1024 * 1024
        console.page.wait_for_function("document.querySelector('#result_list progress').value >= 100", timeout=60_000)
        row = console.page.locator("#result_list tbody tr", has_text="test-org/big-model")
        console.page.wait_for_function(
            "document.querySelector('#result_list [data-status-for]').textContent === 'completed'")
        assert on_same_document(console)
        assert row.get_by_role("button", name="Resume").is_disabled()

        # A bulk action: the completed task is deleted through the service.
        row.locator("input.action-select").check()
        console.page.select_option("select[name=action]", "delete_selected")
        console.page.click("button[name=index]")
        assert "elete: 1 download(s)" in console.message("info")
        assert console.page.locator("#result_list tbody tr", has_text="test-org/big-model").count() == 0

        # A download started elsewhere (here: the API, with the key) is announced on the open page.
        started = httpx.post(f"{console_service.url}/api/downloads/start", headers={"X-API-Key": API_KEY},
                             json={"model_id": "test-org/big-model", "source": "huggingface"})
        assert started.status_code in (200, 201, 202), started.text
        notice = console.page.locator("#download-live [data-unlisted]")
        expect(notice).to_have_text("1 more download changed since this list was loaded: reload")
        notice.click()
        expect(console.page.locator("#result_list tbody tr", has_text="test-org/big-model")).to_have_count(1)
    finally:
        fake_hub.bytes_per_second = None
    assert console.errors == []


def test_deploy_the_tiny_gguf_chat_in_the_playground_and_stop(console, tiny_gguf):
    page = console.page
    row = search_and_download(console, "tiny-llama", TINY_REPO)
    expect(row.locator("[data-status-for]")).to_have_text("completed", timeout=60_000)

    page.get_by_role("link", name="Deploy a model").first.click()
    page.select_option("#id_model", f"huggingface|{TINY_REPO}")
    page.fill("#id_max_model_len", "256")
    page.locator("#id_max_model_len").dispatch_event("change")
    # The estimate of the model chosen before (another engine's) may still be shown: wait for this model's.
    page.wait_for_function("document.getElementById('memory-estimate').dataset.fits === 'true' && "
                           "document.getElementById('memory-estimate').textContent.includes('llama.cpp')")
    assert "llama.cpp" in page.locator("#memory-estimate").inner_text()
    page.click("#deploy-form input[type=submit]")
    assert "is starting on llama.cpp" in console.message()
    row = page.locator("#result_list tbody tr", has_text=TINY_REPO)
    page.wait_for_function(
        "document.querySelector('#result_list [data-health-for]').textContent.startsWith('healthy')", timeout=60_000)
    assert row.locator("[data-status-for]").inner_text() == "running"

    # The log view, left open in a second tab, follows what the engine writes next.
    logs = console.new_tab()
    logs.goto(console.url + row.get_by_role("link", name="Logs").get_attribute("href"))
    logs.wait_for_function("document.getElementById('deployment-log').textContent.includes('llama')")
    assert "/v1/completions" not in logs.locator("#deployment-log").text_content()

    console.open("/admin/playground/")
    page.fill("#id_prompt", "Hello there")
    page.fill("#id_max_tokens", "24")
    # Count the updates of the answer: streamed text arrives in several of them.
    page.evaluate("""() => {
        window.__updates = 0;
        new MutationObserver(() => { window.__updates += 1; })
            .observe(document.getElementById('transcript'), {subtree: true, characterData: true, childList: true});
    }""")
    page.click("#send")
    page.wait_for_function("document.getElementById('playground-state').dataset.state !== 'streaming'",
                           timeout=60_000)
    assert page.locator("#playground-state").get_attribute("data-state") == "done", console.errors
    answer = page.locator("#transcript .assistant .text").inner_text()
    assert answer.strip()
    assert page.evaluate("window.__updates") > 3  # the turns themselves, then the text piece by piece

    page.check("input[name=mode][value=completions]")
    page.fill("#id_prompt", "Once upon a time")
    page.click("#send")
    page.wait_for_function("document.getElementById('playground-state').dataset.state === 'done'", timeout=60_000)
    assert page.locator("#transcript .completion .text").inner_text().strip()

    logs.wait_for_function("document.getElementById('deployment-log').textContent.includes('/v1/completions')")

    console.open("/admin/deployments/deployment/")
    row = page.locator("#result_list tbody tr", has_text=TINY_REPO)
    assert row.locator("[data-restarts-for]").inner_text() == "0"
    row.get_by_role("button", name="Stop").click()
    assert "stop done" in console.message()
    row = page.locator("#result_list tbody tr", has_text=TINY_REPO)
    assert row.locator("[data-status-for]").inner_text() == "stopped"
    assert console.errors == []


def test_a_key_made_in_the_console_is_shown_once_and_the_usage_page_charts_what_was_served(console):
    page = console.page
    console.open("/admin/core/apikey/add/")
    page.fill("#id_name", "console-made")
    page.check("input[name=scopes][value=read]")
    page.fill("#id_allowed_models", "test-org/tiny-*")
    page.click("input[name=_save]")
    shown = re.search(r"The API key for console-made is: ([A-Za-z0-9]{8}\.[A-Za-z0-9]{32})\.",
                      console.message("warning"))
    assert shown, console.message("warning")
    key = shown.group(1)
    console.open("/admin/core/apikey/")  # shown that once: the list has its prefix only
    row = page.locator("#result_list tbody tr", has_text="console-made")
    assert key.split(".")[0] in row.inner_text() and "read" in row.inner_text()
    assert key.split(".")[1] not in page.content()
    assert httpx.get(f"{console.url}/api/system/load", headers={"X-API-Key": key}).status_code == 200
    assert httpx.post(f"{console.url}/api/models/sync", json={}, headers={"X-API-Key": key}).status_code == 403

    # The playground's chat and completion (the test before) were served without a key.
    console.open("/admin/usage/")
    page.wait_for_function("document.getElementById('usage').dataset.drawn === 'true'")
    assert page.locator("#requests-chart canvas").count() == 1 and page.locator("#tokens-chart canvas").count() == 1
    assert page.locator("#requests-chart").get_attribute("data-series") == "1"  # one model served
    no_key = page.locator("#usage-per-key tbody tr", has_text="no key").locator("td")
    assert int(no_key.nth(1).inner_text()) >= 2 and int(no_key.nth(4).inner_text()) >= 1
    page.click("text=7d")
    page.wait_for_function("document.getElementById('usage').dataset.drawn === 'true'")
    assert "hourly" in page.locator(".usage-spans").inner_text()
    assert console.errors == []


def test_refusals_are_messages_not_error_pages(console):
    page = console.page
    console.open("/admin/deployments/deployment/add/")
    page.evaluate("""() => {
        const option = new Option('not downloaded', 'huggingface|nobody/nothing', true, true);
        document.getElementById('id_model').append(option);
    }""")
    page.click("#deploy-form input[type=submit]")
    assert "/nothing (huggingface) has no completed download" in console.message("error")
    page.evaluate("document.getElementById('id_max_model_len').removeAttribute('min')")
    page.fill("#id_max_model_len", "0")
    page.click("#deploy-form input[type=submit]")
    assert "_model_len: Ensure this value is greater than or equal to 1" in console.message("error")
    console.open("/admin/downloads/downloadtask/")
    page.evaluate("""() => {
        const form = document.createElement('form');
        form.method = 'post';
        form.action = '/admin/downloads/downloadtask/no-such-task/act/pause/';
        form.innerHTML = `<input name="csrfmiddlewaretoken" value="${LLMConsole.csrfToken()}">`;
        document.body.append(form);
        form.submit();
    }""")
    page.wait_for_url("**/admin/downloads/downloadtask/")
    assert "No download task no-such-task" in console.message("error")
    assert console.errors == []
