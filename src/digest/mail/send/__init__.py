"""Sending: the claim loop (delivery), transports, claim holders, the rate limit, runs, sender processes,
resends and notices."""
