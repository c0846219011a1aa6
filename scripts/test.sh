#!/usr/bin/env bash
# Run the whole test suite: installs what the tests need, then pytest. Arguments go to pytest.
source "$(dirname "$0")/setup-env.sh"
install_requirements requirements.txt requirements/test.txt requirements-dev.txt
# The tests run a real OCI registry (Debian's docker-registry) for the Ollama source, drive the
# console in Debian's Chromium, and scrape the service with Debian's Prometheus.
missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing ${missing[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null
fi
exec "$VENV/bin/python" -m pytest "$@"
