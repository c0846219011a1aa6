#!/usr/bin/env bash
# Set up and run LLM Manager: virtual environment, requirements, migrations,
# then the worker cluster and the web server on LLM_MANAGER_HOST:LLM_MANAGER_PORT
# (127.0.0.1:5000). Ctrl-C or SIGTERM stops both. Arguments go to `manage.py serve`.
source "$(dirname "$0")/setup-env.sh"
install_requirements requirements.txt
exec "$VENV/bin/python" manage.py serve "$@"
