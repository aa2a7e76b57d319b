"""`make run-distributed`: every service and the gateway as its own uvicorn process.

Against the machine's PostgreSQL (a database per service, created if missing and migrated on
start) and RabbitMQ. docker-compose.yml and deploy/ describe the same topology and variables.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from gateway.registry import DISTRIBUTED_PORTS, SANDBOX, SANDBOX_FACTORY, SERVICES

PG_BASE = os.environ.get("PG_BASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def peer_urls(ports: Mapping[str, int]) -> dict[str, str]:
    """Where every service and the sandbox listen: each process may call the ones it needs."""
    return {f"{name.upper()}_URL": f"http://127.0.0.1:{ports[name]}" for name in (*SERVICES, SANDBOX)}


def service_environment(
    name: str,
    base: Mapping[str, str] | None = None,
    *,
    database_prefix: str = "ehealth",
    ports: Mapping[str, int] = DISTRIBUTED_PORTS,
) -> dict[str, str]:
    """The variables one service process gets (docker-compose.yml and deploy/ set the same)."""
    env = dict(base if base is not None else os.environ)
    env.update(peer_urls(ports))
    env.update(
        {
            "SERVICE_NAME": name,
            # The caller's base environment wins over this process's (tests pass their own broker).
            "DATABASE_URL": f"{env.get('PG_BASE_URL', PG_BASE)}/{database_prefix}_{name}",
            "AMQP_URL": env.get("AMQP_URL", AMQP_URL),
            "RUN_MIGRATIONS": "true",
            "DEV_AUTH": env.get("DEV_AUTH", "true"),
        }
    )
    return env


def gateway_environment(
    base: Mapping[str, str] | None = None, *, ports: Mapping[str, int] = DISTRIBUTED_PORTS
) -> dict[str, str]:
    env = dict(base if base is not None else os.environ)
    env.update(peer_urls(ports))
    env["SERVICE_NAME"] = "gateway"
    env["DEV_AUTH"] = env.get("DEV_AUTH", "true")
    return env


def uvicorn_command(target: str, port: int, workers: int = 1) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def start_services(
    workers: int = 1,
    *,
    ports: Mapping[str, int] = DISTRIBUTED_PORTS,
    base_env: Mapping[str, str] | None = None,
    database_prefix: str = "ehealth",
    log_dir: Path | None = None,
) -> list[subprocess.Popen[bytes]]:
    """Start the sandbox and every service (the order of ``SERVICES``), without the gateway.

    ``log_dir``: each process writes its output to ``<log_dir>/<name>.log`` instead of this terminal."""
    sandbox_env = {**(base_env if base_env is not None else os.environ), "SERVICE_NAME": SANDBOX}
    # The simulators keep their state in memory: one worker, or each would see a different P1.
    processes = [_popen(SANDBOX, uvicorn_command(SANDBOX_FACTORY, ports[SANDBOX], 1), sandbox_env, log_dir)]
    for name, target in SERVICES.items():
        env = service_environment(name, base_env, database_prefix=database_prefix, ports=ports)
        processes.append(_popen(name, uvicorn_command(target, ports[name], workers), env, log_dir))
    return processes


def start_gateway(
    workers: int = 1,
    *,
    ports: Mapping[str, int] = DISTRIBUTED_PORTS,
    base_env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
) -> subprocess.Popen[bytes]:
    """The gateway alone: it may start before its services (it loads their specs once they answer)."""
    env = gateway_environment(base_env, ports=ports)
    return _popen("gateway", uvicorn_command("gateway.app:create_app", ports["gateway"], workers), env, log_dir)


def _popen(name: str, command: list[str], env: Mapping[str, str], log_dir: Path | None) -> subprocess.Popen[bytes]:
    if log_dir is None:
        return subprocess.Popen(command, env=env)
    with (log_dir / f"{name}.log").open("ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def start_all(
    workers: int = 1,
    *,
    ports: Mapping[str, int] = DISTRIBUTED_PORTS,
    base_env: Mapping[str, str] | None = None,
    database_prefix: str = "ehealth",
    log_dir: Path | None = None,
) -> list[subprocess.Popen[bytes]]:
    """Start every service, then the gateway; tests pass their own ports, env and database names."""
    processes = start_services(
        workers, ports=ports, base_env=base_env, database_prefix=database_prefix, log_dir=log_dir
    )
    processes.append(start_gateway(workers, ports=ports, base_env=base_env, log_dir=log_dir))
    return processes


def wait_ready(url: str = f"http://127.0.0.1:{DISTRIBUTED_PORTS['gateway']}/readyz", timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    processes = start_all(int(os.environ.get("WORKERS", "1")))
    try:
        if wait_ready():
            print(
                f"\n  Distributed suite ready: gateway http://127.0.0.1:{DISTRIBUTED_PORTS['gateway']}/docs "
                f"({', '.join(f'{n} :{DISTRIBUTED_PORTS[n]}' for n in (*SERVICES, SANDBOX))}). Ctrl-C stops it.\n",
                flush=True,
            )
        else:
            print("  the suite did not become ready in 60 s; see the logs above", flush=True)
        while all(p.poll() is None for p in processes):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop_all(processes)


if __name__ == "__main__":
    main()
