"""One module per schema revision, applied in order."""

__all__: list[str] = []
