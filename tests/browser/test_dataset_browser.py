"""The Dataset tab in a real browser: upload two recordings and a folder of ready clips,
build, read the summary."""
import pytest
import soundfile as sf
from playwright.sync_api import expect

from tests import speech

pytestmark = pytest.mark.browser


def _recording(path, turns):
    audio, rate, _ = speech.conversation(turns, gap_s=0.8)
    sf.write(path, audio, rate, subtype="PCM_16")
    return str(path)


def test_upload_two_recordings_build_and_see_the_summary(studio, page, tmp_path):
    url, workspace = studio
    first = _recording(tmp_path / "morning show.wav",
                       [(0, speech.SENTENCES[0]), (1, speech.SENTENCES[1])])
    second = _recording(tmp_path / "interview.wav",
                        [(1, speech.SENTENCES[2]), (0, speech.SENTENCES[3])])
    clips = tmp_path / "ready clips"
    clips.mkdir()
    for n, (who, text) in enumerate([(0, speech.SENTENCES[4]), (1, speech.SENTENCES[5])]):
        sf.write(clips / f"clip{n}.wav", speech.speak(text, who)[0], speech.RATE)
    (clips / "metadata.csv").write_text(f"clip0|{speech.SENTENCES[4]}\nclip1|{speech.SENTENCES[5]}\n")
    page.goto(url)
    page.locator("#new-project-name textarea, #new-project-name input").first.fill("Podcast")
    page.click("#create-project")
    expect(page.locator("#projects-table")).to_contain_text("Podcast")

    page.get_by_role("tab", name="Dataset").click()
    page.locator("#recordings-upload input[type=file]").set_input_files([first, second])
    expect(page.locator("#recordings-upload")).to_contain_text("interview")
    expect(page.locator("#recordings-upload")).to_contain_text("morning show")
    page.locator("#clip-folder-upload input[type=file]").set_input_files(str(clips))
    expect(page.locator("#clip-folder-upload")).to_contain_text("metadata.csv")
    page.click("#build-dataset")
    page.locator('#build-state[data-status="done"]').wait_for(timeout=90_000)

    summary = page.locator("#dataset-summary")
    expect(summary).to_contain_text("6 clips", timeout=15_000)
    expect(summary).to_contain_text("2 speaker(s)")
    expect(summary).to_contain_text("Speaker 1")
    expect(page.locator("#recordings-table")).to_contain_text("built")
    page.screenshot(path=str(tmp_path / "dataset-built.png"), full_page=True)
