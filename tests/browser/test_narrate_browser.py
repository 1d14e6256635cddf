"""The Narrate tab in a real browser: import, preview a paragraph, narrate, play, download."""
import io

import pytest
import soundfile as sf
from playwright.sync_api import expect

from engines import encode

pytestmark = pytest.mark.browser

BOOK = """The Small Harbour

Chapter 1

Boats came home at dusk. The harbour lights were warm.

Chapter 2

A gull landed on the wall and looked at the sea.
"""


def audio_seconds(page, elem_id: str) -> float:
    """Wait until the player under ``elem_id`` holds audio; fetch it as the browser would."""
    link = page.locator(f"#{elem_id} a[data-testid=download-link]")
    link.wait_for(timeout=60_000)
    response = page.request.get(link.get_attribute("href"))
    assert response.ok
    info = sf.info(io.BytesIO(response.body()))
    return info.frames / info.samplerate


def test_import_preview_narrate_play_and_download(studio, page, tmp_path):
    url, _workspace = studio
    expect.set_options(timeout=30_000)  # the studio shares 2 cores with a loading voice model
    book = tmp_path / "harbour.txt"
    book.write_text(BOOK)
    page.goto(url)
    page.locator("#new-project-name textarea, #new-project-name input").first.fill("Audiobook")
    page.click("#create-project")
    expect(page.locator("#projects-table")).to_contain_text("Audiobook")

    page.get_by_role("tab", name="Narrate").click()
    expect(page.locator("#retailer-notice")).to_contain_text("ACX")
    page.locator("#book-upload input[type=file]").set_input_files(str(book))
    expect(page.locator("#book-upload")).to_contain_text("harbour.txt")
    page.click("#import-book")
    expect(page.locator("#chapters-table")).to_contain_text("Chapter 2")
    expect(page.locator("#book-info")).to_contain_text("The Small Harbour")
    expect(page.locator("#paragraph-text textarea")).to_have_value(
        "Boats came home at dusk. The harbour lights were warm.")

    page.click("#read-preview")
    expect(page.locator("#read-output")).to_contain_text("The harbour lights were warm.",
                                                         timeout=30_000)
    page.click("#preview-paragraph")
    assert 2.0 < audio_seconds(page, "preview-audio") < 10.0

    page.locator("#back-check input").uncheck()
    page.click("#narrate-book")
    page.locator('#jobs-list .vs-job[data-status="done"]', has_text="Narrate").wait_for(
        timeout=120_000)
    expect(page.locator("#chapter-reports")).to_contain_text("meets ACX", timeout=20_000)

    page.locator("#play-chapter input").click()
    page.get_by_role("option", name="2. Chapter 2").click()
    assert 3.0 < audio_seconds(page, "chapter-audio") < 15.0

    link = page.locator("#narration-files tr", has_text=".m4b").locator("a").first
    with page.expect_download() as info:
        link.click()
    saved = tmp_path / "book.m4b"
    info.value.save_as(saved)
    marks = encode.read_chapters(saved)
    assert [m[0] for m in marks] == ["Chapter 1", "Chapter 2"]
    page.screenshot(path=str(tmp_path / "narrate.png"), full_page=True)
