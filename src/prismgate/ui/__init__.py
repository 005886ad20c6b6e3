"""The web console (`/ui`): static pages served from the wheel, reading the same API a
client calls, signed in with a session cookie (sessions.py)."""
