#!/usr/bin/env bash
# Run the whole test suite: installs what the tests need, then pytest. Arguments go to pytest.
source "$(dirname "$0")/setup-env.sh"
install_requirements requirements.txt requirements-dev.txt
exec "$VENV/bin/python" -m pytest "$@"
