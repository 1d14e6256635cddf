"""Jobs: run, progress, metrics, cancel, orphan to interrupted, resume, one GPU job."""
import os
import signal
import time

import pytest

from projects import jobs
from projects.errors import Conflict


def wait_for(predicate, timeout=30.0, every=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


def test_job_runs_to_done_with_progress_metrics_and_result(store, ws):
    job = jobs.submit(store, "test_count", {"n": 5, "sleep": 0.0})
    final = jobs.run_job(store, ws, job.id)
    assert final.status == "done" and final.progress == 1.0
    assert final.result["summary"] == "counted 5"
    steps = [s for s, _, _ in jobs.metrics(store, job.id)["count/unit"]]
    assert steps == [0, 1, 2, 3, 4]


def test_user_error_fails_with_one_line_and_bug_keeps_traceback_in_log(store, ws):
    polite = jobs.run_job(store, ws, jobs.submit(store, "test_fail_user", {}).id)
    assert polite.status == "failed" and polite.error == "The recording is empty."
    crashed = jobs.run_job(store, ws, jobs.submit(store, "test_crash", {}).id)
    assert crashed.status == "failed" and "RuntimeError" in crashed.error
    assert "Traceback" in ws.job_log(crashed.id).read_text()


def test_cancel_a_queued_job_never_runs_it(store, ws):
    job = jobs.submit(store, "test_count", {"n": 3})
    assert jobs.cancel(store, job.id).status == "cancelled"
    assert jobs.metrics(store, job.id) == {}


def test_runner_cancels_then_resumes_without_redoing_units(store, ws):
    runner = jobs.JobRunner(ws)
    job = jobs.submit(store, "test_count", {"n": 40, "sleep": 0.05})
    runner.tick()
    wait_for(lambda: jobs.get_job(store, job.id).progress > 0.1)
    jobs.cancel(store, job.id)
    stopped = wait_for(lambda: (j := jobs.get_job(store, job.id)).status == "cancelled" and j)
    done_before = stopped.state["done"]
    assert 0 < done_before < 40

    jobs.resume(store, job.id)
    runner.tick()
    final = wait_for(lambda: (j := jobs.get_job(store, job.id)).status == "done" and j)
    assert final.result["resumed_from"] == done_before
    steps = [s for s, _, _ in jobs.metrics(store, job.id)["count/unit"]]
    assert steps == list(range(40)), "every unit ran exactly once"


def test_killed_worker_becomes_interrupted_and_resumes(store, ws):
    runner = jobs.JobRunner(ws)
    job = jobs.submit(store, "test_count", {"n": 30, "sleep": 0.05})
    runner.tick()
    running = wait_for(lambda: (j := jobs.get_job(store, job.id)).progress > 0.1 and j.pid and j)
    os.kill(running.pid, signal.SIGKILL)
    runner.children[job.id].wait()
    assert job.id in jobs.reap_orphans(store)
    interrupted = jobs.get_job(store, job.id)
    assert interrupted.status == "interrupted"

    final = jobs.run_job(store, ws, jobs.resume(store, job.id).id)  # e.g. `job run ID`
    assert final.status == "done"
    assert final.result["resumed_from"] == interrupted.state["done"] > 0


def test_only_one_heavy_job_runs_at_a_time(store, ws):
    first = jobs.submit(store, "test_count_heavy", {"n": 1})
    second = jobs.submit(store, "test_count_heavy", {"n": 1})
    light = jobs.submit(store, "test_count", {"n": 1})
    assert jobs.claim(store, first.id, os.getpid())
    assert not jobs.claim(store, second.id, os.getpid())
    assert jobs.claim(store, light.id, os.getpid())
    assert jobs.get_job(store, second.id).status == "queued"


def test_resume_is_refused_for_finished_jobs(store, ws):
    job = jobs.run_job(store, ws, jobs.submit(store, "test_count", {"n": 1, "sleep": 0}).id)
    with pytest.raises(Conflict):
        jobs.resume(store, job.id)
