"""digest: builds a daily newsletter digest from scraped articles and mails it."""

# The one place the version is written: pyproject.toml reads it from here (setuptools'
# dynamic version), so `digest --version` need not read the installed package's metadata.
__version__ = "0.1.0"

__all__ = ["__version__"]
