"""The background worker: one leader by database lease runs the scheduled jobs; `status` reads what it recorded."""
