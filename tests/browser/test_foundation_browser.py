"""The studio in a real browser: create a project, analyse a recording, cancel a job."""
import pytest
from playwright.sync_api import expect

from projects import jobs
from projects.store import Store

pytestmark = pytest.mark.browser


def job_card(page, title_part, status):
    return page.locator(f'#jobs-list .vs-job[data-status="{status}"]', has_text=title_part)


def test_create_project_analyse_recording_and_cancel_a_job(studio, page, tone, tmp_path):
    url, workspace = studio
    page.goto(url)
    page.locator("#new-project-name textarea, #new-project-name input").first.fill("Browser test")
    page.click("#create-project")
    expect(page.locator("#projects-table")).to_contain_text("Browser test")
    assert page.locator("#current-project input").first.input_value() == "Browser test"

    page.get_by_role("tab", name="Dataset").click()
    wav = tone("interview.wav", seconds=4.0)
    page.locator("#recordings-upload input[type=file]").set_input_files(str(wav))
    expect(page.locator("#recordings-upload")).to_contain_text("interview.wav")
    page.click("#add-recordings")
    job_card(page, "Analyse", "done").wait_for(timeout=90_000)
    expect(page.locator("#recordings-table")).to_contain_text("analysed")
    page.screenshot(path=str(tmp_path / "dataset.png"), full_page=True)

    store = Store(workspace / "studio.db", migrate=False)
    slow = jobs.submit(store, "test_count", {"n": 600, "sleep": 0.1}, title="Long count")
    job_card(page, "Long count", "running").wait_for(timeout=60_000)
    page.wait_for_function(
        "() => document.querySelector('#job-pick input').value.includes('Long count')")
    page.click("#job-cancel")
    job_card(page, "Long count", "cancelled").wait_for(timeout=30_000)
    assert jobs.get_job(store, slow.id).status == "cancelled"
