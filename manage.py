#!/usr/bin/env python
"""Django's command-line utility for LLM Manager."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llm_manager.settings")
    from llm_manager.cli import run

    sys.exit(run(sys.argv))


if __name__ == "__main__":
    main()
