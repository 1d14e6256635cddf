"""The Train tab in a real browser: start a tiny run, watch the plots fill, listen to a
checkpoint sample, cancel, resume, promote a checkpoint and speak with the new voice."""
import io

import pytest
import soundfile as sf
from playwright.sync_api import expect

from projects.projects import create_project
from projects.store import Store
from projects.workspace import Workspace
from tests.projects.test_training import add_speaker

pytestmark = pytest.mark.browser


def pick(page, elem_id: str, option_text: str) -> None:
    """Choose an option of a Gradio dropdown by (part of) its label."""
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=option_text).first.click()


def fill_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input").first
    box.fill(str(value))
    box.press("Tab")


def status(page):
    return page.locator("#run-status-line")


def fetch_wav_seconds(page, src: str) -> float:
    response = page.request.get(src)
    assert response.ok, src
    info = sf.info(io.BytesIO(response.body()))
    return info.frames / info.samplerate


def test_train_watch_cancel_resume_promote_and_speak(studio, page, tmp_path):
    url, workspace = studio
    expect.set_options(timeout=60_000)  # a training worker shares 2 cores with the browser
    ws = Workspace.open(workspace)
    store = Store(ws.db_path, migrate=False)
    project = create_project(store, ws, "Voice")
    add_speaker(store, ws, project, "Joe")

    page.goto(url)
    expect(page.locator("#current-project input")).to_have_value("Voice")
    page.get_by_role("tab", name="Train").click()
    pick(page, "train-speaker", "Joe")
    fill_number(page, "train-steps", 8)
    fill_number(page, "train-batch", 2)
    fill_number(page, "train-ckpt-every", 2)
    page.click("#train-check")
    expect(page.locator("#train-check-result")).to_contain_text("Ready to train")
    page.click("#train-start")
    expect(page.locator("#train-check-result")).to_contain_text("Started run #1")

    # Live: the status line counts steps and the loss plot gains points while it trains.
    expect(status(page)).to_have_attribute("data-status", "running", timeout=90_000)
    page.wait_for_function("() => +document.querySelector('#run-status-line').dataset.step >= 1",
                           timeout=90_000)
    page.wait_for_function(
        "() => !document.querySelector('#plot-0').innerText.match(/Empty|No data/) && "
        "document.querySelector('#plot-0 canvas, #plot-0 svg')", timeout=30_000)

    # A checkpoint sample appears and can be played (fetched as the player would).
    sample = page.locator("#run-samples audio").first
    sample.wait_for(timeout=120_000)
    assert fetch_wav_seconds(page, sample.evaluate("a => a.src")) > 0.1

    page.click("#run-cancel")
    expect(status(page)).to_have_attribute("data-status", "cancelled", timeout=90_000)
    stopped_at = int(status(page).get_attribute("data-step"))
    assert stopped_at < 8
    page.click("#run-resume")
    expect(status(page)).to_have_attribute("data-status", "done", timeout=150_000)
    expect(status(page)).to_have_attribute("data-step", "8")
    expect(page.locator("#runs-table")).to_contain_text("8/8")
    page.screenshot(path=str(tmp_path / "train.png"), full_page=True)

    page.locator("#promote-name input, #promote-name textarea").first.fill("Browser voice")
    page.click("#promote-btn")
    expect(page.locator("#speak-voice input")).to_have_value("Browser voice (en-us)",
                                                             timeout=60_000)
    page.click("#speak-btn")
    # The player may draw a waveform instead of exposing <audio>; its download link has the file.
    src = page.wait_for_function(
        "() => { const root = document.querySelector('#speak-audio'); if (!root) return null;"
        " const a = root.querySelector('audio'); const s = a && (a.currentSrc || a.src);"
        " if (s && !s.startsWith('blob:')) return s;"
        " const link = root.querySelector('a[href*=\"/file=\"], a[download]');"
        " return link ? link.href : null; }", timeout=60_000).json_value()
    assert fetch_wav_seconds(page, src) > 0.3
