#!/usr/bin/env python
"""Django's command-line utility for the demo project (migrate, createsuperuser, shell, ...)."""

import os
import sys


def main() -> None:
    """Run an administrative task against app.settings unless told otherwise."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")
    try:
        from django.core.management import execute_from_command_line
    except ImportError as exc:
        raise ImportError(
            "Couldn't import Django. Is the virtual environment active and "
            "requirements.txt installed?"
        ) from exc
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
