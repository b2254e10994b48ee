"""Settings: safe development defaults, loud failures for missing production values."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.server import ROOT

CHECK = "from app import create_app; create_app(); print('started')"


def start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "SOHBET_ENV_FILE": "/nonexistent", "HOME": "/tmp"}
    return subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_development_starts_with_nothing_set() -> None:
    result = start({})
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


@pytest.mark.parametrize(
    "missing", ["SECRET_KEY", "DATABASE_URL", "ADMIN_PASSWORD", "ALLOWED_ORIGINS"]
)
def test_production_names_the_missing_setting(missing: str) -> None:
    env = {
        "SOHBET_ENV": "production",
        "SECRET_KEY": "s" * 32,
        "DATABASE_URL": "postgres://u@127.0.0.1/db",
        "ADMIN_PASSWORD": "pw",
        "ALLOWED_ORIGINS": "https://chat.example.com",
    }
    del env[missing]
    result = start(env)
    assert result.returncode != 0
    assert missing in result.stderr and "must" in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TZ", "Mars/Olympus"),
        ("MAX_MESSAGE_CHARS", "lots"),
        ("DEFAULT_LOCALE", "de"),
        ("MEDIA_STORAGE", "ftp"),
        ("MEDIA_MAX_BYTES", "lots"),
        ("MEDIA_MAX_PIXELS", "0"),
        ("CLOUDINARY_URL", "https://api.cloudinary.com/demo"),
    ],
)
def test_malformed_values_are_named(name: str, value: str) -> None:
    extra = {"MEDIA_STORAGE": "cloudinary"} if name == "CLOUDINARY_URL" else {}
    result = start({name: value, **extra})
    assert result.returncode != 0
    assert name in result.stderr


def test_env_file_is_read(tmp_path: pytest.TempPathFactory) -> None:
    env_file = tmp_path / ".env"  # type: ignore[operator]
    env_file.write_text("TZ=Mars/Olympus\n")
    result = start({"SOHBET_ENV_FILE": str(env_file)})
    assert result.returncode != 0 and "TZ" in result.stderr


def test_s3_storage_names_what_it_needs() -> None:
    result = start({"MEDIA_STORAGE": "s3", "S3_ACCESS_KEY_ID": "k", "S3_SECRET_ACCESS_KEY": "s"})
    assert result.returncode != 0 and "S3_BUCKET" in result.stderr
