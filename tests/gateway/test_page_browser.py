"""The live-captions page in a real browser: Debian's chromium, driven by selenium, headless.

A synthesized two-speaker conversation (eval.synth, espeak-ng) is the microphone
(`--use-file-for-fake-audio-capture`), the stack behind the page is what production runs, only
smaller (tests/gateway/live_stack.py: the trained tiny TDT and the offline diarization backend
behind an in-process orchestrator, the gateway on uvicorn, with a token). The page must show the
spoken words as finals whose speaker labels follow the reference speakers, file mode must show
the speaker-attributed transcript and download srt/vtt/txt, and errors must reach the person.

Screenshots go to $PARAKEET_TEST_RESULTS/page (default: a pytest tmp folder); with
PARAKEET_UPDATE_SCREENSHOT=1 the live one also replaces docs/images/live-captions.png (the README's).
Without chromium and chromedriver the tests skip, except in CI (CI set), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eval import synth
from eval.metrics import WordErrors
from parakeet_server.gateway.config import GatewayConfig
from tests.gateway import live_stack as live_stack_module
from tests.gateway.live_stack import LiveStack, live_stack
from tests.gateway.test_page import with_page
from tests.support.servers import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.espeak]

TOKEN = "browser-test-token"
PAD_S = 1.0  # silence before the conversation, and twice that after (the last final's endpoint)
README_SCREENSHOT = REPO_ROOT / "docs" / "images" / "live-captions.png"
ROWS_SCRIPT = """
return [...document.querySelectorAll(arguments[0] + ' li')].map(li => ({
  speaker: li.dataset.speaker || '', start: Number(li.dataset.start), end: Number(li.dataset.end),
  text: li.querySelector('.text').textContent}));
"""

Row = dict[str, Any]


def browser_binaries() -> tuple[str, str]:
    """chromium and chromedriver; a skip without them, a failure in CI (which must run these tests)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    message = (
        "chromium and chromedriver are not installed (apt-get install chromium chromium-driver; make setup)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get("PARAKEET_TEST_RESULTS")
    folder = Path(root) / "page" if root else tmp_path_factory.mktemp("page-results")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> tuple[synth.Conversation, Path]:
    conversation = synth.conversation(seed=1207, num_speakers=2, num_turns=6, overlap_probability=0.0)
    silence = np.zeros(int(PAD_S * synth.SAMPLE_RATE), dtype=conversation.audio.dtype)
    path = tmp_path_factory.mktemp("talk") / "talk.wav"
    synth.write_wav(path, np.concatenate([silence, conversation.audio, silence, silence]))
    return conversation, path


@pytest.fixture(scope="module")
def stack() -> Iterator[LiveStack]:
    settings = GatewayConfig(request_timeout_s=120.0, auth_token=TOKEN)
    with pytest.MonkeyPatch.context() as patch:
        create_app = live_stack_module.create_app
        patch.setattr(live_stack_module, "create_app", lambda config: with_page(create_app(config)))
        with live_stack(settings) as running:
            yield running


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(talk: tuple[synth.Conversation, Path], downloads: Path) -> Iterator[Any]:
    chromium, chromedriver = browser_binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--use-fake-ui-for-media-stream",  # grant the microphone without a prompt
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={talk[1]}%noloop",  # the conversation, once, then silence
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1280,1000",
        "--disable-dev-shm-usage",
        "--mute-audio",
    ):
        options.add_argument(flag)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # chromium refuses to run as root with its sandbox
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        yield driver
    finally:
        driver.quit()


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def text_of(driver: Any, element_id: str) -> str:
    text: str = driver.execute_script("return document.getElementById(arguments[0]).textContent", element_id)
    return text


def error_text(driver: Any) -> str:
    shown: str = driver.execute_script(
        "const e = document.getElementById('error'); return e.hidden ? '' : e.textContent"
    )
    return shown


def open_page(driver: Any, stack: LiveStack, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{stack.url}/")
    driver.execute_script("sessionStorage.clear()")
    driver.refresh()
    field = driver.find_element(By.ID, "token")
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#token-form button").click()
    assert text_of(driver, "token-state") == "token saved in this tab"


def rows(driver: Any, list_selector: str) -> list[Row]:
    found: list[Row] = driver.execute_script(ROWS_SCRIPT, list_selector)
    return found


def labels_by_reference_speaker(found: list[Row], conversation: synth.Conversation) -> dict[str, set[str]]:
    """Each row's speaker label, grouped by the reference speaker of the turn it overlaps most."""
    grouped: dict[str, set[str]] = {}
    for row in found:
        overlaps = [
            (min(row["end"], turn.end + PAD_S) - max(row["start"], turn.start + PAD_S), turn.speaker)
            for turn in conversation.turns
        ]
        overlap, speaker = max(overlaps)
        if overlap > 0:
            grouped.setdefault(speaker, set()).add(row["speaker"])
    return grouped


def assert_speakers_follow_the_reference(found: list[Row], conversation: synth.Conversation) -> None:
    grouped = labels_by_reference_speaker(found, conversation)
    assert len(grouped) == 2, grouped
    assert all(len(labels) == 1 for labels in grouped.values()), f"one label per reference speaker: {grouped}"
    assert len(set.union(*grouped.values())) == 2, f"two speakers, two labels: {grouped}"
    assert set.union(*grouped.values()) <= {"SPEAKER_00", "SPEAKER_01"}


def word_error_rate(found: list[Row], conversation: synth.Conversation) -> float:
    errors = WordErrors()
    errors.add(conversation.transcript(), " ".join(row["text"] for row in found))
    return errors.wer


def network_events(driver: Any) -> list[dict[str, Any]]:
    return [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]


def test_live_captions_from_the_microphone(
    browser: Any, stack: LiveStack, talk: tuple[synth.Conversation, Path], results: Path
) -> None:
    from selenium.webdriver.common.by import By

    conversation, _ = talk
    open_page(browser, stack, TOKEN)
    network_events(browser)  # drop what loading the page logged
    # The offline backend hears a third voice in the last turn (in batch too); say there are two.
    browser.find_element(By.ID, "max-speakers").send_keys("2")
    browser.find_element(By.ID, "start").click()
    wait_until(lambda: text_of(browser, "live-status") in ("listening", "hearing speech"), 30, "the session")
    # The fake microphone plays in real time; a screenshot mid-way shows finals and the interim line.
    playing = PAD_S + conversation.duration + 2 * PAD_S
    started = time.monotonic()
    time.sleep(playing * 0.75)
    browser.save_screenshot(str(results / "live-during.png"))
    time.sleep(max(0.0, playing + 1.0 - (time.monotonic() - started)))
    browser.find_element(By.ID, "stop").click()
    wait_until(lambda: text_of(browser, "live-status").startswith("done"), 120, "transcription_session.done")
    browser.save_screenshot(str(results / "live.png"))
    if os.environ.get("PARAKEET_UPDATE_SCREENSHOT"):
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(results / "live.png", README_SCREENSHOT)

    assert error_text(browser) == ""
    assert text_of(browser, "live-status").endswith("2 speaker(s)")
    assert text_of(browser, "interim") == ""  # every interim became a final
    finals = rows(browser, "#finals")
    assert len(finals) >= len(conversation.turns) - 1
    wer = word_error_rate(finals, conversation)
    assert wer <= 0.25, f"WER {wer:.3f}: {[row['text'] for row in finals]}"
    assert_speakers_follow_the_reference(finals, conversation)
    assert browser.find_element(By.ID, "start").is_enabled()
    assert not browser.find_element(By.ID, "stop").is_enabled()

    # The token went as the WebSocket subprotocol, and in no URL.
    events = network_events(browser)
    handshakes = [e["params"] for e in events if e["method"] == "Network.webSocketWillSendHandshakeRequest"]
    assert len(handshakes) == 1
    headers = {name.lower(): value for name, value in handshakes[0]["request"]["headers"].items()}
    assert headers["sec-websocket-protocol"] == f"realtime, openai-insecure-api-key.{TOKEN}"
    urls = [e["params"].get("url") or e["params"].get("request", {}).get("url", "") for e in events]
    assert any("/v1/realtime?intent=transcription" in url for url in urls)
    assert not any(TOKEN in url for url in urls)


def test_file_mode_shows_the_speakers_and_downloads_documents(
    browser: Any, stack: LiveStack, talk: tuple[synth.Conversation, Path], results: Path, downloads: Path
) -> None:
    from selenium.webdriver.common.by import By

    conversation, path = talk
    open_page(browser, stack, TOKEN)
    # As in live mode: the person says there are two speakers.
    browser.find_element(By.ID, "max-speakers").send_keys("2")
    browser.find_element(By.ID, "file-input").send_keys(str(path))
    status = wait_until(
        lambda: (text := text_of(browser, "file-status")).endswith(("speaker(s)", "failed")) and text,
        120,
        "the file",
    )
    assert error_text(browser) == ""
    assert status.startswith("talk.wav: 00:") and status.endswith(", 2 speaker(s)")
    segments = rows(browser, "#file-transcript")
    wer = word_error_rate(segments, conversation)
    assert wer <= 0.10, f"WER {wer:.3f}: {[row['text'] for row in segments]}"
    assert_speakers_follow_the_reference(segments, conversation)
    browser.save_screenshot(str(results / "file.png"))

    expected = {"srt": (" --> ", "SPEAKER_0"), "vtt": ("WEBVTT", "<v SPEAKER_0"), "txt": ("SPEAKER_0",)}
    for extension, needles in expected.items():
        browser.find_element(By.ID, f"download-{extension}").click()
        document = downloads / f"talk.{extension}"
        wait_until(document.exists, 60, f"talk.{extension} to download")
        text = wait_until(document.read_text, 10, f"talk.{extension} to be written")
        assert all(needle in text for needle in needles), text
    lines = (downloads / "talk.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        ("SPEAKER_00", "SPEAKER_01")[i % 2] for i in range(len(lines))
    ] or [line.split(":")[0] for line in lines] == [
        ("SPEAKER_01", "SPEAKER_00")[i % 2] for i in range(len(lines))
    ]


def test_errors_reach_the_person(
    browser: Any, stack: LiveStack, talk: tuple[synth.Conversation, Path]
) -> None:
    from selenium.webdriver.common.by import By

    _, path = talk
    open_page(browser, stack, "not-the-token")
    browser.find_element(By.ID, "file-input").send_keys(str(path))
    shown = wait_until(lambda: error_text(browser), 60, "the file's error")
    assert "this server needs an 'Authorization: Bearer <token>' header" in shown
    assert shown.endswith("(UNAUTHENTICATED)")
    assert text_of(browser, "file-status") == "talk.wav: failed"

    browser.find_element(By.ID, "start").click()
    shown = wait_until(
        lambda: "live session closed" in (text := error_text(browser)) and text, 30, "the close"
    )
    assert "live session closed (4401)" in shown
    assert browser.find_element(By.ID, "start").is_enabled()
    assert text_of(browser, "live-status") == "stopped"
