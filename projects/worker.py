"""Entry point of a job process: ``python -m projects.worker JOB_ID --workspace W``.

The studio's JobRunner starts this with ``--claimed`` (it already moved the row to
running); ``launch.py job run ID`` runs the same code in the foreground.
"""
from __future__ import annotations

import argparse
import sys

from projects import jobs
from projects.store import Store
from projects.workspace import Workspace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("job_id", type=int)
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--claimed", action="store_true")
    args = parser.parse_args(argv)
    ws = Workspace.open(args.workspace)
    store = Store(ws.db_path)
    jobs.install_sigterm_handler()
    try:
        job = jobs.run_job(store, ws, args.job_id, claimed=args.claimed)
    except KeyboardInterrupt:
        return 130
    return 0 if job.status == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
