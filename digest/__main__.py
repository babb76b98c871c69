"""Allows ``python -m digest``."""

from digest.cli import main

main()
