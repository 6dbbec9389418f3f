"""Planning: who is due (planner), what is new to them (reads), one digest per subscriber per slot with its
content frozen (compose, pure)."""
