"""Readers who manage themselves: signup with double opt-in and its mails, what is held
about an address (shown, exported), and erasure."""

__all__: list[str] = []
