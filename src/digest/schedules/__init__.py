"""When a digest is due: periods, slots and cron expressions (below planning and the worker, which both ask)."""
