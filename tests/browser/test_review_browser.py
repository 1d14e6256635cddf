"""The Review tab in a real browser: keyboard proofreading, merging, export, recording."""
from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import expect

from engines import audio as audio_io
from projects import projects as project_store, review
from projects.store import Store
from projects.workspace import Workspace
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.projects.test_review import add_clip, add_speaker
from tests.speech import RATE, SENTENCES, speak

pytestmark = pytest.mark.browser
#: The machines running these tests are shared and slow; give the UI time to answer.
UI_TIMEOUT_MS = 20_000


def seed(workspace, voices: dict[str, list[int]]):
    """A project "Review test" with one speaker per entry and those sentences as clips."""
    ws = Workspace.open(workspace)
    store = Store(ws.db_path)
    project = project_store.create_project(store, ws, "Review test")
    made = {}
    for name, sentences in voices.items():
        sid = add_speaker(store, project, name)
        made[name] = (sid, [add_clip(store, ws, project, sid, speak(SENTENCES[i], 0)[0],
                                     SENTENCES[i]) for i in sentences])
    return ws, store, project, made


def wait_for(check, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def choose(page, elem_id, option):
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=option).click()


def open_review(page, url, inner):
    page.goto(url)
    expect(page.locator("#current-project input").first).to_have_value("Review test",
                                                                     timeout=30_000)
    page.get_by_role("tab", name="Review").click()
    page.get_by_role("tab", name=inner).click()


def test_proofread_with_the_keyboard(studio, page):
    url, workspace = studio
    ws, store, project, made = seed(workspace, {"Speaker 1": [0, 1, 2]})
    clips = made["Speaker 1"][1]
    open_review(page, url, "Proofread")
    info = page.locator("#proof-info")
    expect(info).to_contain_text("Clip 1 of 3", timeout=UI_TIMEOUT_MS)
    expect(page.locator("#proof-keys")).to_contain_text("accept", timeout=UI_TIMEOUT_MS)
    page.locator("body").click(position={"x": 5, "y": 5})
    # Keys pressed faster than the server answers queue up: none is lost or hits a stale clip.
    for key in "anr":
        page.keyboard.press(key)
    expect(info).to_contain_text("Clip 3 of 3", timeout=UI_TIMEOUT_MS)
    wait_for(lambda: [review.get_clip(store, c).review for c in clips] == [
        "accepted", "unreviewed", "rejected"])
    page.keyboard.press("e")
    box = page.locator("#proof-text textarea, #proof-text input").first
    expect(box).to_be_focused()
    box.press("Control+a")
    page.keyboard.type("The children played outside.")
    page.keyboard.press("Enter")
    expect(box).not_to_be_focused()
    # No settling: B right after the save still lands after it, on the clip it was meant for.
    page.keyboard.press("b")  # back to clip 2: keys work again once the box is left
    page.keyboard.press("a")
    expect(info).to_contain_text("Clip 3 of 3", timeout=UI_TIMEOUT_MS)
    wait_for(lambda: review.get_clip(store, clips[2]).text == "The children played outside.")
    expect(page.locator("#proof-clips")).to_contain_text("The children played outside.",
                                                         timeout=UI_TIMEOUT_MS)
    wait_for(lambda: [review.get_clip(store, c).review for c in clips] == [
        "accepted", "accepted", "rejected"])
    # Every queued key got its answer: the queue is empty, not waiting on a lost reply.
    page.wait_for_function("() => window.vsProofPending() === 0", timeout=UI_TIMEOUT_MS)


def test_merge_two_clusters_then_export_a_speaker(studio, page):
    url, workspace = studio
    ws, store, project, made = seed(workspace, {"Speaker 1": [0, 1], "Speaker 2": [3]})
    open_review(page, url, "Clusters")
    expect(page.locator("#review-speakers")).to_contain_text("Speaker 2", timeout=UI_TIMEOUT_MS)
    choose(page, "merge-pick", "Speaker 2 (1 clips)")
    page.click("#merge-speakers")
    expect(page.locator("#cluster-status")).to_contain_text("Merged 1 speaker",
                                                            timeout=UI_TIMEOUT_MS)
    assert [s["name"] for s in review.list_speakers(store, project.id)] == ["Speaker 1"]
    expect(page.locator("#review-speakers")).not_to_contain_text("Speaker 2")

    speaker_id = made["Speaker 1"][0]
    review.accept_all(store, project.id, speaker_id)
    page.get_by_role("tab", name="Export").click()
    choose(page, "export-speakers", "Speaker 1 (3 clips)")
    page.click("#export-run")
    expect(page.locator("#export-summary")).to_contain_text("3 clips", timeout=UI_TIMEOUT_MS)
    folder = ws.project_dir(project.slug) / "exports" / "speaker-1-ljspeech"
    lines = (folder / "metadata.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[2].startswith("speaker_1_00003|" + SENTENCES[3])
    assert len(list((folder / "wavs").glob("*.wav"))) == 3
    expect(page.locator("#export-zip")).to_contain_text("speaker-1-ljspeech",
                                                        timeout=UI_TIMEOUT_MS)


@pytest.fixture
def mic_page(tmp_path):
    """Chromium whose fake microphone plays a spoken sentence (looped)."""
    from playwright.sync_api import sync_playwright

    speech, _ = speak(SENTENCES[6], 0)
    gap = np.zeros(int(0.8 * RATE), np.float32)
    wav = tmp_path / "mic.wav"
    sf.write(wav, audio_io.resample(np.concatenate([gap, speech, gap]), RATE, 48000), 48000,
             subtype="PCM_16")
    args = CHROMIUM_ARGS + [f"--use-file-for-fake-audio-capture={wav}"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.set_default_timeout(30_000)
        yield page
        page.screenshot(path=str(tmp_path / "last.png"), full_page=True)
        browser.close()


def test_record_a_prompt_with_a_fake_microphone(studio, mic_page):
    url, workspace = studio
    page = mic_page
    ws, store, project, _ = seed(workspace, {})
    open_review(page, url, "Record")
    page.locator("#record-speaker input, #record-speaker textarea").first.fill("Reader")
    page.click("#record-start")
    expect(page.locator("#record-prompt")).to_contain_text("Prompt 1 of",
                                                           timeout=UI_TIMEOUT_MS)
    first_prompt = page.locator("#record-prompt h3").inner_text().strip()
    page.locator("#record-mic").get_by_role("button", name="Record").click()
    page.wait_for_timeout(4000)
    page.locator("#record-mic").get_by_role("button", name="Stop").click()
    # The take is uploaded once the player offers it for download.
    expect(page.locator("#record-mic a[data-testid='download-link']")).to_be_attached(
        timeout=15_000)
    page.click("#record-save")
    expect(page.locator("#record-progress")).to_contain_text("1 of 234", timeout=UI_TIMEOUT_MS)
    expect(page.locator("#record-takes")).to_contain_text(first_prompt[:20],
                                                          timeout=UI_TIMEOUT_MS)
    speaker = review.find_speaker(store, project.id, "Reader")
    clips = review.list_clips(store, project.id, speaker["id"])
    assert len(clips) == 1 and clips[0].text == first_prompt
    assert 1.0 < clips[0].duration_s < 8.0
