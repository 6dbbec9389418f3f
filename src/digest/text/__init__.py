"""Text that arrives from sources: repair, cleaning, HTML to text and sanitised HTML, safe links."""
