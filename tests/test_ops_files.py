"""The deployment files (Dockerfile, docker-compose.yml) agree with the code, checked without
a Docker engine: commands parse with the real CLI parser, GLASSBOX_* variables are real
settings, Redis is durable, workers scale and get a GPU, the image runs as non-root.

Every checking helper returns a list of problems, and each one is also fed a deliberately
wrong input to prove that it can fail.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cli import build_parser
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
PYPROJECT = ROOT / "pyproject.toml"


# ---------------------------------------------------------------- helpers


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with `\\` continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    if pending:
        keyword, _, rest = pending.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerfile_exec_form(text: str, instruction: str) -> list[str]:
    """The JSON-array (exec form) argument of the last `instruction`; the last one wins."""
    found = [args for keyword, args in dockerfile_instructions(text) if keyword == instruction]
    assert found, f"the Dockerfile has no {instruction}"
    try:
        value = json.loads(found[-1])
    except json.JSONDecodeError:
        pytest.fail(f"{instruction} {found[-1]} is not in JSON-array (exec) form")
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), (
        f"{instruction} {found[-1]} is not a JSON array of strings"
    )
    return value


def cli_problems(argv: list[str] | str) -> list[str]:
    """Why `glassbox <argv>` would be rejected by the real argument parser ([] if accepted)."""
    if isinstance(argv, str):
        argv = shlex.split(argv)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as exc:
        return [f"`glassbox {shlex.join(argv)}` is rejected (exit {exc.code}): {stderr.getvalue().strip()}"]
    return []


def load_compose(text: str | None = None) -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text() if text is None else text)


def glassbox_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run the glassbox image (built here, or tagged glassbox)."""
    return {
        name: service
        for name, service in (compose.get("services") or {}).items()
        if "build" in service or str(service.get("image", "")).split(":")[0].endswith("glassbox")
    }


def compose_command_problems(compose: dict[str, Any], default_cmd: list[str]) -> list[str]:
    problems: list[str] = []
    services = glassbox_services(compose)
    if not services:
        problems.append("no service uses the glassbox image")
    for name, service in services.items():
        entrypoint = service.get("entrypoint")
        if entrypoint is not None and entrypoint not in (["glassbox"], "glassbox"):
            problems.append(f"service {name}: entrypoint {entrypoint!r} is not glassbox")
        command = service.get("command", default_cmd)
        problems += [f"service {name}: {p}" for p in cli_problems(command)]
    return problems


def environment_names(environment: Any) -> list[str]:
    """Variable names of a compose `environment` (mapping, or list of `K=V` / `K`)."""
    if environment is None:
        return []
    if isinstance(environment, dict):
        return [str(k) for k in environment]
    return [str(item).split("=", 1)[0] for item in environment]


SETTINGS_ENV_NAMES = {"GLASSBOX_" + name.upper() for name in Settings.model_fields}


def env_problems(compose: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for name, service in (compose.get("services") or {}).items():
        for var in environment_names(service.get("environment")):
            if var.startswith("GLASSBOX_") and var not in SETTINGS_ENV_NAMES:
                problems.append(f"service {name}: {var} is not a field of service.settings.Settings")
    return problems


def redis_problems(compose: dict[str, Any]) -> list[str]:
    redis = (compose.get("services") or {}).get("redis")
    if redis is None:
        return ["no redis service"]
    command = redis.get("command", "")
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    options: dict[str, str] = {}
    for i, arg in enumerate(argv):
        if arg.startswith("--") and i + 1 < len(argv):
            options[arg[2:]] = argv[i + 1]
    problems = []
    if options.get("appendonly") != "yes":
        problems.append("redis does not run with --appendonly yes (jobs would be lost on restart)")
    if options.get("maxmemory-policy") != "noeviction":
        problems.append("redis does not run with --maxmemory-policy noeviction (keys could be evicted)")
    return problems


def worker_problems(compose: dict[str, Any]) -> list[str]:
    worker = (compose.get("services") or {}).get("worker")
    if worker is None:
        return ["no worker service"]
    problems = []
    if "container_name" in worker:
        problems.append("worker has a container_name, so it cannot be scaled")
    if worker.get("ports"):
        problems.append("worker publishes ports, so it cannot be scaled")
    devices = (
        ((worker.get("deploy") or {}).get("resources") or {}).get("reservations") or {}
    ).get("devices") or []
    if not any(
        d.get("driver") == "nvidia" and "gpu" in (d.get("capabilities") or []) for d in devices
    ):
        problems.append("worker reserves no nvidia GPU (deploy.resources.reservations.devices)")
    return problems


def dockerfile_problems(text: str) -> list[str]:
    instructions = dockerfile_instructions(text)
    problems = []
    users = [args for keyword, args in instructions if keyword == "USER"]
    if not users:
        problems.append("the Dockerfile has no USER: the container would run as root")
    elif users[-1].split(":")[0] in {"root", "0"}:
        problems.append(f"the last USER is {users[-1]}: the container would run as root")
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    if not any(re.search(r"\buv sync\b", r) and "--frozen" in r for r in runs):
        problems.append("the Dockerfile does not install from the lock with `uv sync --frozen`")
    return problems


# ---------------------------------------------------------------- the real files


def test_compose_commands_and_dockerfile_cmd_parse_with_the_cli():
    text = DOCKERFILE.read_text()
    assert dockerfile_exec_form(text, "ENTRYPOINT") == ["glassbox"]
    cmd = dockerfile_exec_form(text, "CMD")
    assert cli_problems(cmd) == []
    compose = load_compose()
    assert {"api", "worker"} <= set(glassbox_services(compose))
    assert compose_command_problems(compose, cmd) == []


def test_compose_glassbox_variables_are_settings_fields():
    compose = load_compose()
    used = [
        var
        for service in compose["services"].values()
        for var in environment_names(service.get("environment"))
        if var.startswith("GLASSBOX_")
    ]
    assert "GLASSBOX_REDIS_URL" in used  # the anchors were resolved and seen
    assert env_problems(compose) == []


def test_redis_is_durable_and_never_evicts():
    assert redis_problems(load_compose()) == []


def test_worker_scales_and_reserves_a_gpu():
    assert worker_problems(load_compose()) == []


def test_dockerfile_runs_as_non_root_and_installs_from_the_lock():
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


def test_console_script_points_at_the_cli():
    project = tomllib.loads(PYPROJECT.read_text())
    assert project["project"]["scripts"]["glassbox"] == "service.cli:main"


# ---------------------------------------------------------------- the helpers can fail


def test_cli_check_rejects_wrong_commands():
    assert cli_problems(["worker"]) == []
    assert cli_problems("api --host 0.0.0.0 --port 8000") == []
    assert cli_problems(["serve"])
    assert cli_problems(["api", "--port", "eighty"])
    assert cli_problems(["worker", "--gpus", "2"])
    assert cli_problems([])
    bad = {"services": {"worker": {"build": ".", "command": ["wroker"]}}}
    assert compose_command_problems(bad, ["api"])
    assert compose_command_problems({"services": {"redis": {"image": "redis"}}}, ["api"])
    entry = {"services": {"api": {"image": "glassbox:latest", "entrypoint": ["python"]}}}
    assert compose_command_problems(entry, ["api"])


def test_dockerfile_exec_form_parsing():
    text = 'FROM x\nENTRYPOINT ["glassbox"]\nCMD ["api", \\\n  "--port", "8000"]\n'
    assert dockerfile_exec_form(text, "CMD") == ["api", "--port", "8000"]
    with pytest.raises(pytest.fail.Exception):
        dockerfile_exec_form("FROM x\nCMD glassbox api\n", "CMD")


def test_env_check_rejects_unknown_variables():
    compose = load_compose(
        """
        x-env: &env
          GLASSBOX_REDIS_URL: redis://redis:6379/0
          GLASSBOX_RESULTS_TTL: "60"
        services:
          api: {environment: {<<: *env}}
          worker: {environment: ["GLASSBOX_DEVICE=auto", "GLASSBOX_GPU=0", "OTHER=1"]}
        """
    )
    problems = env_problems(compose)
    assert len(problems) == 2
    assert any("GLASSBOX_RESULTS_TTL" in p for p in problems)
    assert any("GLASSBOX_GPU" in p for p in problems)


def test_redis_check_rejects_volatile_redis():
    assert redis_problems({"services": {}})
    assert redis_problems({"services": {"redis": {"command": "redis-server"}}})
    assert redis_problems(
        {"services": {"redis": {"command": "redis-server --appendonly yes --maxmemory-policy allkeys-lru"}}}
    )
    assert redis_problems(
        {"services": {"redis": {"command": ["redis-server", "--appendonly", "no", "--maxmemory-policy", "noeviction"]}}}
    )


def test_worker_check_rejects_unscalable_or_gpu_less_workers():
    good = load_compose()["services"]["worker"]
    assert worker_problems({"services": {}})
    assert worker_problems({"services": {"worker": {**good, "container_name": "worker"}}})
    assert worker_problems({"services": {"worker": {**good, "ports": ["9000:9000"]}}})
    assert worker_problems({"services": {"worker": {k: v for k, v in good.items() if k != "deploy"}}})


def test_dockerfile_check_rejects_root_and_unlocked_installs():
    ok = "FROM x\nRUN uv sync \\\n    --frozen --no-dev\nUSER glassbox\n"
    assert dockerfile_problems(ok) == []
    assert dockerfile_problems("FROM x\nRUN uv sync --frozen\n")
    assert dockerfile_problems("FROM x\nRUN uv sync --frozen\nUSER app\nUSER root\n")
    assert dockerfile_problems("FROM x\nRUN uv sync --frozen\nUSER 0:0\n")
    assert dockerfile_problems("FROM x\nRUN uv sync --no-dev\nUSER glassbox\n")


def test_the_api_and_workers_share_one_s3_store_served_by_compose():
    compose = load_compose()
    assert "s3" in compose["services"] and compose["services"]["s3"]["command"][0] == "server"
    for name in ("api", "worker"):
        service = compose["services"][name]
        env = service["environment"]
        assert env["GLASSBOX_BLOB_URL"].startswith("${GLASSBOX_BLOB_URL:-s3://")
        assert "s3:8333" in env["GLASSBOX_S3_ENDPOINT_URL"] and "s3" in service["depends_on"]
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
    identities = compose["configs"]["s3-identities"]["content"]
    assert "${GLASSBOX_S3_ACCESS_KEY:-glassbox}" in identities and '"Admin"' in identities
