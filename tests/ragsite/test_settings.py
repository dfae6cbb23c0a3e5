import os
import subprocess
import sys

from tests.processes import ROOT


def _import_prod_settings(secret_key: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SECRET_KEY": secret_key,
        "DJANGO_SETTINGS_MODULE": "ragsite.settings.prod",
    }
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_prod_refuses_to_start_with_an_insecure_secret_key() -> None:
    result = _import_prod_settings("insecure-dev-key-change-me")
    assert result.returncode != 0
    assert "SECRET_KEY is missing or insecure" in result.stderr


def test_prod_starts_with_a_strong_secret_key() -> None:
    result = _import_prod_settings("k" * 20 + "Zq93mPx0vLr8Tn2Wc5Yb7Ja4Hd6Ks1Fg")
    assert result.returncode == 0, result.stderr
