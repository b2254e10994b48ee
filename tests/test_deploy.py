"""What the Dockerfile and render.yaml do, checked without a Docker engine.

The wheel is built from the same files the Dockerfile copies, installed non-editable (the
image's `pip install .`), and started with the Dockerfile's own CMD from a directory laid out
like its WORKDIR; the HEALTHCHECK command is run as written. Not checked here: the base image,
`useradd`/USER, VOLUME and the build itself (no Docker engine runs in CI).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.support.server import ROOT, free_port

# Building the wheel and starting a server take minutes on a busy 2-core machine.
pytestmark = pytest.mark.timeout(600)
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def dockerfile_copies() -> list[str]:
    return [line.split()[1] for line in DOCKERFILE.splitlines() if line.startswith("COPY ")]


def dockerfile_cmd(port: int) -> list[str]:
    cmd = json.loads(next(line[4:] for line in DOCKERFILE.splitlines() if line.startswith("CMD ")))
    assert cmd[:2] == ["sh", "-c"], cmd
    script = cmd[2].replace("${PORT}", str(port)).replace("0.0.0.0", "127.0.0.1")
    words = shlex.split(script)
    assert words[0] == "exec", words
    return words[1:]


def healthcheck(port: int) -> list[str]:
    block = DOCKERFILE.split("HEALTHCHECK", 1)[1].split("CMD ", 1)[1].split("\n#", 1)[0]
    words = shlex.split(block.replace("\\\n", " "))
    return [sys.executable if w == "python" else w for w in words]


async def run_healthcheck(port: int) -> subprocess.CompletedProcess[bytes]:
    """The Dockerfile's HEALTHCHECK command, run once as Docker would (PORT set)."""
    return await asyncio.to_thread(
        subprocess.run,
        healthcheck(port),
        capture_output=True,
        timeout=30,
        env={**os.environ, "PORT": str(port)},
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(site-packages dir with the installed wheel, WORKDIR with the site files)."""
    base = tmp_path_factory.mktemp("deploy")
    source, site, workdir = base / "src", base / "site", base / "workdir"
    source.mkdir()
    workdir.mkdir()
    for name in dockerfile_copies():
        target = (
            source if name in {"pyproject.toml", "README.md", "app", "media_relay"} else workdir
        )
        item = ROOT / name
        if item.is_dir():
            shutil.copytree(item, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(item, target / name)
    assert (workdir / "templates").is_dir() and (source / "app").is_dir()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(base / "dist"), str(source)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    wheel = next((base / "dist").glob("sohbet-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return site, workdir


def environment(site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOHBET_", "TELEGRAM_"))}
    env.update(
        PYTHONPATH=str(site),
        SOHBET_ENV_FILE="/nonexistent",
        SOHBET_ENV="production",
        SECRET_KEY="deploy-test-secret",
        ADMIN_PASSWORD="deploy-test-password",
        ALLOWED_ORIGINS="https://chat.example.com",
        # The image's VOLUME is /app/data; Render gives a PostgreSQL URL instead.
        DATABASE_URL="sqlite://data/sohbet.db",
        PYTHONUNBUFFERED="1",
    )
    env.pop("REDIS_URL", None)
    env.update(extra)
    return env


def test_the_wheel_holds_every_package(installed: tuple[Path, Path]) -> None:
    """Every package under app/ and media_relay/ is in the wheel (pyproject.toml lists them by
    hand), with the translation catalogs, and imports come from the installed copy."""
    site, workdir = installed
    for folder in ("app", "media_relay"):
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.relative_to(ROOT)
            assert (site / relative).is_file(), f"{relative.parent} is missing from the wheel"
    assert (site / "app/translations/tr/LC_MESSAGES/messages.po").is_file()
    out = subprocess.run(
        [sys.executable, "-c", "import app, media_relay; print(app.__file__)"],
        cwd=workdir, env=environment(site), capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip().startswith(str(site)), out.stdout


async def test_started_like_the_image_it_serves_and_stops_on_sigterm(
    installed: tuple[Path, Path],
) -> None:
    site, workdir = installed
    port = free_port()
    log = workdir / "server.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *dockerfile_cmd(port),
            cwd=workdir,
            env={
                **environment(site),
                "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(1200):
                assert proc.returncode is None, log.read_text()
                try:
                    async with http.get(url + "/health") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"no /health answer in 120 s:\n{log.read_text()}")
            async with http.get(url + "/") as r:
                page = await r.text()
                assert r.status == 200 and 'id="start-form"' in page
            css = re.search(r'href="(/static/css/app\.css\?v=\w+)"', page)
            assert css
            async with http.get(url + css.group(1)) as r:
                assert r.status == 200
        # Docker runs the check up to --retries=3 times before calling the container unhealthy.
        for _ in range(3):
            check = await run_healthcheck(port)
            if check.returncode == 0:
                break
            await asyncio.sleep(1)
        assert check.returncode == 0, (check.stderr, log.read_text())
        assert (workdir / "data" / "sohbet.db").is_file(), "the data volume holds the database"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0, log.read_text()
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    healthy = await run_healthcheck(port)
    assert healthy.returncode != 0, "the HEALTHCHECK fails when nothing answers"


async def test_a_failed_start_exits_with_an_error(installed: tuple[Path, Path]) -> None:
    """A start-up failure after the database was opened (here: a file that is not a SQLite
    database) used to hang forever on aiosqlite's non-daemon thread; now the process exits
    non-zero, as a supervisor needs to see."""
    site, workdir = installed
    bad = workdir / "not-a-database.db"
    bad.write_text("this is not a SQLite database " * 10)
    proc = await asyncio.create_subprocess_exec(
        *dockerfile_cmd(free_port()),
        cwd=workdir,
        env={
            **environment(site, DATABASE_URL=f"sqlite://{bad}"),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode not in (0, None), output.decode()
    assert b"start-up failed: file is not a database" in output


def test_render_blueprint_matches_the_settings() -> None:
    """render.yaml: a Docker web service with the /health check, PostgreSQL wired to
    DATABASE_URL, every production-required setting provided, and only real setting names."""
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text())
    (web,) = [s for s in blueprint["services"] if s["type"] == "web"]
    assert web["runtime"] == "docker" and web["healthCheckPath"] == "/health"
    keys = {v["key"] for v in web["envVars"]}
    assert {"SOHBET_ENV", "SECRET_KEY", "DATABASE_URL", "ADMIN_PASSWORD", "ALLOWED_ORIGINS"} <= keys
    database = next(v for v in web["envVars"] if v["key"] == "DATABASE_URL")
    names = {d["name"] for d in blueprint.get("databases", [])}
    assert database["fromDatabase"]["name"] in names
    assert keys <= documented_settings(), keys - documented_settings()


def documented_settings() -> set[str]:
    return set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))


def test_env_example_lists_every_setting() -> None:
    """Every variable app/config.py (and the media settings) read is in .env.example."""
    read: set[str] = set()
    for module in (ROOT / "app").rglob("*.py"):
        source = module.read_text()
        read |= set(
            re.findall(
                r'(?:env\.get|integer|required|_bool\(env\.get)\(\s*"([A-Z][A-Z0-9_]+)"', source
            )
        )
        read |= set(re.findall(r'\("([A-Z][A-Z0-9_]+)", \d+\)', source))
    read -= {"SOHBET_ENV_FILE"}
    assert read, "no setting found: the pattern is stale"
    missing = read - documented_settings()
    assert not missing, f"not in .env.example: {sorted(missing)}"
