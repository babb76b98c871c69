"""The daily send on a schedule: APScheduler 3.x in the foreground, its job kept in the database.

The job's state (its next run time) lives in the same database as the issues, so a
restart picks up where the last process stopped: a run missed while digest was down is
made if it comes back within the grace period, and skipped, with a log line, if later.

APScheduler moves the stored next run to tomorrow as soon as a run starts, so a send
killed half way, or stopped by a relay that went down, would otherwise wait for the next
day. At start, and before each run, the scheduler therefore first finishes every recent
issue that still has copies pending (``schedule.catch_up_days``), and a send that stopped
is tried again ``schedule.retry_minutes`` later, the same day, up to
``schedule.retry_limit`` times. The ledger makes all of these send each copy once.
Two schedulers started by mistake against one database may both take up an issue; the
ledger and the send lock let each subscriber get it once.
"""

from digest.schedule.jobs import (
    BOUNCES_JOB_ID,
    JOB_ID,
    JOBS_TABLE,
    RETRY_JOB_PREFIX,
    poll_bounces,
    retry_send,
    scheduled_send,
)
from digest.schedule.scheduler import Scheduler, trigger

# Jobs stored in the database name their function as digest.schedule:NAME (written by
# earlier versions): the names stay importable from here.
__all__ = [
    "BOUNCES_JOB_ID",
    "JOBS_TABLE",
    "JOB_ID",
    "RETRY_JOB_PREFIX",
    "Scheduler",
    "poll_bounces",
    "retry_send",
    "scheduled_send",
    "trigger",
]
