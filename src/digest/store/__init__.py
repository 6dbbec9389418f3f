"""The store: models, the database, the reads everyone shares (queries) and the writes of delivery (digests,
bounces, counters).

Transactions: one way per purpose.

- A request or a command's unit of work (a subscribe, a manage change, an import batch): an ORM session from
  the sessionmaker, ``with factory() as session, session.begin():`` (``db.transaction(factory)`` says the same).
  The unit commits when the block ends and rolls back if it raises; the use case it calls never commits itself.
- A batch of a long job (planning, ingest of one source, a bounce report): the same form, one per batch, so a
  crash loses at most the batch in hand and memory stays flat.
- A single statement of delivery state (a claim, an outcome, a hand-back, a renewal, the sweep, the lease):
  Core on ``engine.begin()``, no ORM objects; digest.store.digests and digest.worker.lease.
- Recording "sent": a driver connection kept for the run, autocommitted, ``BEGIN ... COMMIT`` by hand around a
  group (SentRecorder): no statement compiled per message, one round trip per group on PostgreSQL.
- Reads: ``with factory() as session:`` without ``begin()``; nothing is written, nothing committed.
"""
