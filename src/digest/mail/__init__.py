"""Mail: plan (what each digest holds), render, assemble, transport, deliver, and the ledger of what was sent."""
