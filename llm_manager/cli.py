"""`llm-manager VERB …`: the operators' command. Each verb is a management command of one of the apps, so the
command line and `manage.py` share one code path; this entry point only finds the settings and turns a bad
setting into one line and exit status 2."""

from __future__ import annotations

import getpass
import os
import sys

from llm_manager.config import SettingError

# The verbs `llm-manager --help` lists first; every other management command works too.
VERBS = ("serve", "pull", "models", "ls", "rm", "import", "deploy", "ps", "stop", "restart", "logs", "chat",
         "engines", "node")


# Commands that run the service: what they do is the service's own doing ("system"), not an operator's.
SERVER_COMMANDS = ("serve", "qcluster", "runserver", "daphne")


def run(argv: list[str]) -> int:
    """Run a management command; the exit status. A command an operator runs acts as that operator (the audit
    trail names the system user)."""
    from django.core.management import execute_from_command_line

    from core.identity import Caller, current_caller

    if len(argv) > 1 and argv[1] not in SERVER_COMMANDS:
        current_caller.set(Caller(name=_system_user(), kind="command", ip="local"))
    try:
        execute_from_command_line(argv)
    except SettingError as exc:
        sys.stderr.write(f"llm-manager: {exc}\n")
        return 2
    return 0


def _system_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid with no name (containers)
        return f"uid {os.getuid()}"


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llm_manager.settings")
    argv = ["llm-manager", *sys.argv[1:]]
    if len(argv) == 1 or argv[1] in ("-h", "--help"):
        sys.stdout.write("usage: llm-manager VERB [options]   (llm-manager help VERB for a verb's options)\n\n"
                         f"verbs: {', '.join(VERBS)}\n"
                         "also: migrate, createsuperuser, sync_models and the other management commands\n")
        sys.exit(0)
    sys.exit(run(argv))
