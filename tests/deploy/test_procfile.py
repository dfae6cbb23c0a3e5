"""deploy/: the Procfile runs production settings behind the shipped nginx, and the other files agree."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from ragsite.devstack import free_port
from tests.processes import database_url_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROD = "ragsite.settings.prod"
DJANGO_PROCESSES = ("web", "ingest", "reembed", "beat")


def procfile() -> dict[str, str]:
    """Process name → its command line, as honcho and foreman read deploy/Procfile."""
    lines = (DEPLOY / "Procfile").read_text().splitlines()
    entries = (line.split(":", 1) for line in lines if line.strip() and not line.lstrip().startswith("#"))
    return {name.strip(): command.strip() for name, command in entries}


def split_command(command: str) -> tuple[dict[str, str], list[str]]:
    """A shell command's leading VAR=value assignments, and the rest of its words."""
    words = shlex.split(command)
    assignments: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        assignments[name] = value
    return assignments, words


def option(words: list[str], name: str) -> str | None:
    """The value of `--name value` or `--name=value` among the words; None when absent."""
    for index, word in enumerate(words):
        if word == name and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(f"{name}="):
            return word.split("=", 1)[1]
    return None


def unit(name: str) -> dict[str, list[str]]:
    """A systemd unit's Key=value lines, every value of each key (Environment may repeat)."""
    values: dict[str, list[str]] = {}
    for line in (DEPLOY / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


@pytest.mark.parametrize("name", DJANGO_PROCESSES)
def test_every_django_process_in_the_procfile_runs_production_settings(name: str) -> None:
    assignments, _ = split_command(procfile()[name])
    assert assignments.get("DJANGO_SETTINGS_MODULE") == PROD


def test_the_procfile_web_process_trusts_the_forwarded_headers_of_the_loopback_proxy_only() -> None:
    _, words = split_command(procfile()["web"])
    assert Path(words[0]).name == "uvicorn"
    assert "--proxy-headers" in words
    assert option(words, "--forwarded-allow-ips") == "127.0.0.1"
    assert option(words, "--host") == "127.0.0.1"


def test_the_systemd_units_agree_with_the_procfile() -> None:
    web = unit("ragsite-web.service")
    assert f"DJANGO_SETTINGS_MODULE={PROD}" in " ".join(web["Environment"]).split()
    words = shlex.split(web["ExecStart"][0])
    assert "--proxy-headers" in words
    assert option(words, "--forwarded-allow-ips") == "127.0.0.1"
    assert option(words, "--host") == "127.0.0.1"
    worker = unit("ragsite-worker@.service")
    assert f"DJANGO_SETTINGS_MODULE={PROD}" in " ".join(worker["Environment"]).split()


def test_nginx_proxies_to_the_loopback_web_processes_and_says_who_asked_and_how() -> None:
    conf = (DEPLOY / "nginx" / "ragsite.conf").read_text()
    upstream = re.search(r"upstream ragsite_web \{(.*?)\}", conf, re.S)
    assert upstream is not None
    servers = re.findall(r"^\s*server\s+([^\s;]+)", upstream.group(1), re.M)
    assert servers and all(server.startswith("127.0.0.1:") for server in servers)
    location = re.search(r"location / \{([^}]*proxy_pass http://ragsite_web;[^}]*)\}", conf, re.S)
    assert location is not None
    headers = dict(re.findall(r"proxy_set_header\s+(\S+)\s+([^;]+);", location.group(1)))
    assert headers.get("X-Forwarded-For") in ("$remote_addr", "$proxy_add_x_forwarded_for")
    assert headers.get("X-Forwarded-Proto") == "$scheme"


@pytest.mark.django_db
def test_the_procfile_web_command_serves_production_settings_behind_a_proxy(
    test_database_name: str, tmp_path: Path
) -> None:
    """Started as honcho would (sh -c), with only what the production environment file provides."""
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SETTINGS_MODULE", "DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    env.update(
        PORT=str(port),
        WEB_PROCESSES="1",
        SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL=database_url_for(test_database_name),
        CELERY_BROKER_URL=str(settings.CELERY_BROKER_URL),
        ALLOWED_HOSTS="127.0.0.1",
        LOG_JSON="false",
    )
    log_path = tmp_path / "web.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["sh", "-c", procfile()["web"]],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    https = {"X-Forwarded-Proto": "https"}
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")
            try:
                plain = httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log_path.read_text(errors="replace")
                time.sleep(0.2)
        # Production settings: plain HTTP is sent to HTTPS; X-Forwarded-Proto (from nginx) marks it secure.
        assert plain.status_code == 301
        assert plain.headers["Location"].startswith("https://")
        healthy = httpx.get(f"{base}/healthz", headers=https, timeout=5)
        assert healthy.status_code == 200, healthy.text
        assert healthy.json()["status"] == "ok"
        assert "Strict-Transport-Security" in healthy.headers
        # Proxy headers: the client is the address nginx forwards, not the loopback proxy itself.
        assert httpx.get(f"{base}/metrics", headers=https, timeout=5).status_code == 200
        forwarded = {**https, "X-Forwarded-For": "203.0.113.9"}
        assert httpx.get(f"{base}/metrics", headers=forwarded, timeout=5).status_code == 403
        # DEBUG is off: a missing page is a plain 404, not Django's technical page.
        missing = httpx.get(f"{base}/no-such-page", headers=https, timeout=5)
        assert missing.status_code == 404
        assert "URLconf" not in missing.text
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
