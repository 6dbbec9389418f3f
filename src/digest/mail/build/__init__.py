"""Building a message: render (Jinja2), MIME, the recipient's message (rendered once per content), DKIM,
addresses, VERP."""
