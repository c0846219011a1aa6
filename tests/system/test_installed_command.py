"""The package as an operator installs it: the wheel into a fresh virtual environment outside the checkout, then
`llm-manager serve` with its data in the platform's user data dir, a few verbs against it, and the systemd unit."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import venv

import httpx
import pytest

from tests.service import REPO_ROOT, free_port, wait_for


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv (no checkout on its path) with the wheel built from this checkout installed in it."""
    root = tmp_path_factory.mktemp("installed")
    wheels = root / "wheels"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(wheels),
                    str(REPO_ROOT)], check=True, capture_output=True, timeout=300, cwd=root)
    shutil.rmtree(REPO_ROOT / "build", ignore_errors=True)  # what setuptools leaves in the checkout
    for info in REPO_ROOT.glob("*.egg-info"):
        shutil.rmtree(info, ignore_errors=True)
    (wheel,) = wheels.glob("llm_manager-*.whl")
    venv.create(root / "venv", with_pip=True)
    subprocess.run([str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], check=True,
                   capture_output=True, timeout=600, cwd=root)
    return root


def _verb(installed, env, *args, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([str(installed / "venv" / "bin" / "llm-manager"), *args], cwd=installed, env=env,
                          input=stdin, capture_output=True, text=True, timeout=120)


def test_the_installed_command_serves_and_answers_its_verbs(installed, sources_env, tiny_gguf):
    home = installed / "home"
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), **sources_env, "LLM_MANAGER_PORT": str(port),
           "LLM_MANAGER_ENGINE_PORTS": "18300-18399", "PYTHONUNBUFFERED": "1"}
    listing = _verb(installed, env, "--help")
    assert listing.returncode == 0 and "serve" in listing.stdout and "import" in listing.stdout

    log = open(installed / "serve.log", "wb")
    serve = subprocess.Popen([str(installed / "venv" / "bin" / "llm-manager"), "serve"], cwd=installed, env=env,
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            assert serve.poll() is None, (installed / "serve.log").read_text()
            try:
                return httpx.get(f"{url}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answers, 120, what="the installed service")
        data_dir = home / ".local" / "share" / "llm-manager"
        assert (data_dir / "llm_manager.sqlite3").exists()
        assert not (installed / "data").exists()
        # Templates and the console's static files travel inside the package.
        assert "LLM Manager" in httpx.get(f"{url}/admin/login/").text
        assert httpx.get(f"{url}/static/console/console.css").status_code == 200

        imported = _verb(installed, env, "import", "--path", str(tiny_gguf), "--name", "tiny")
        assert imported.returncode == 0, imported.stderr
        assert "imported  local:tiny" in imported.stdout
        models = _verb(installed, env, "ls")
        assert "local       tiny" in models.stdout and "1 model(s)" in models.stdout
        listed = httpx.get(f"{url}/api/downloads/list").json()["data"]["items"]
        assert [(t["model_id"], t["imported"]) for t in listed] == [("tiny", True)]
        engines = _verb(installed, env, "engines")
        # The fresh environment has the service alone: the engines say what to install.
        assert "llama.cpp" in engines.stdout and "pip install 'llama-cpp-python[server]'" in engines.stdout
        refused = _verb(installed, env, "deploy", "tiny", "--source", "local")
        assert refused.returncode != 0 and "ENGINE_UNAVAILABLE" in refused.stderr
        assert _verb(installed, env, "ps").returncode == 0
        bad = _verb(installed, {**env, "LLM_MANAGER_PORT": "five thousand"}, "serve")
        assert bad.returncode == 2 and bad.stderr.strip() == \
            "llm-manager: LLM_MANAGER_PORT: 'five thousand' is not a whole number"
        taken = _verb(installed, env, "serve")
        assert taken.returncode == 2 and "LLM_MANAGER_PORT" in taken.stderr and "Traceback" not in taken.stderr
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
        log.close()


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_the_systemd_unit_verifies(installed, tmp_path):
    unit = (REPO_ROOT / "deploy" / "llm-manager.service").read_text()
    assert "ExecStart=/opt/llm-manager/bin/llm-manager serve" in unit and "StateDirectory=llm-manager" in unit
    # Verified as installed: its ExecStart pointing at a real llm-manager.
    local = tmp_path / "llm-manager.service"
    local.write_text(unit.replace("/opt/llm-manager/bin/llm-manager", str(installed / "venv" / "bin" / "llm-manager")))
    result = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
