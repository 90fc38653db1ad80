"""``python -m compactlm.cli``."""

from compactlm.cli import main

main()
