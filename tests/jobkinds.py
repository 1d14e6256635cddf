"""Job kinds whose timing the tests control (loaded via VOICE_STUDIO_JOB_MODULES)."""
import time

from projects.errors import BadInput
from projects.jobs import JobKind, register


def count(ctx):
    """Counts `n` units, `sleep` seconds each; saves each finished unit, logs a metric per unit."""
    n, sleep = int(ctx.params.get("n", 10)), float(ctx.params.get("sleep", 0.05))
    start = int(ctx.state.get("done", 0))
    for unit in range(start, n):
        ctx.check_cancel()
        time.sleep(sleep)
        ctx.metric(unit, {"count/unit": unit})
        ctx.save_state(done=unit + 1)
        ctx.progress((unit + 1) / n, f"unit {unit + 1} of {n}")
    return {"summary": f"counted {n}", "resumed_from": start}


def fail_user(ctx):
    raise BadInput("The recording is empty.")


def crash(ctx):
    raise RuntimeError("boom")


register(JobKind("test_count", count, title="Count", heavy=False))
register(JobKind("test_count_heavy", count, title="Count on GPU", heavy=True))
register(JobKind("test_fail_user", fail_user, title="Fails politely"))
register(JobKind("test_crash", crash, title="Crashes"))
