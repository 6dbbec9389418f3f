"""The worker's job ids (what `digest status`, the operator page and the metrics name them by): in a module of their
own, so reading them imports no job."""

from __future__ import annotations

from digest.store import states

PLAN_SEND, POLL, RETRY, FEEDS = "plan-send", "poll-sources", "retry-deliveries", "build-feeds"
BOUNCES = "read-bounces"
# The leader's first planning run (after its first poll) is a one-off job of this id, run for this reason.
START = "start"
FIRST_PLAN = states.FIRST_PLAN
