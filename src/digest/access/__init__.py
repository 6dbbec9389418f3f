"""Who may act besides a subscriber through their own links: the REST API's tokens, and the audit log of what
they (and the operator) changed."""
