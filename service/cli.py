"""The `glassbox` command: `up`, `api`, `worker`, `openapi`."""

from __future__ import annotations

import argparse
import json
import sys

from service.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glassbox", description="Glassbox: what a neuron responds to.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="run everything locally: a private Redis (unless GLASSBOX_REDIS_URL), the API, N workers",
    )
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    up.add_argument("--no-access-log", dest="access_log", action="store_false")

    api = commands.add_parser("api", help="run the HTTP API (configured by GLASSBOX_* variables)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--no-access-log", dest="access_log", action="store_false")

    commands.add_parser("worker", help="run one worker (configured by GLASSBOX_* variables)")
    commands.add_parser("openapi", help="print the OpenAPI document")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "openapi":
        from service.app import create_app

        # Plugins are deployment-specific; the published document is the service's own.
        document = create_app(Settings(plugins=[])).openapi()
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
        return 0
    settings = Settings()
    if args.command == "up":
        from service.supervisor import Supervisor

        if args.workers < 1:
            raise SystemExit("--workers must be at least 1")
        return Supervisor(
            settings, host=args.host, port=args.port, workers=args.workers, access_log=args.access_log
        ).run()
    if args.command == "api":
        if not settings.redis_url:
            raise SystemExit("glassbox api needs GLASSBOX_REDIS_URL (or use `glassbox up`)")
        import uvicorn

        from service.app import create_app

        uvicorn.run(
            create_app(settings),
            host=args.host,
            port=args.port,
            log_level=settings.log_level,
            access_log=args.access_log,
        )
        return 0
    if args.command == "worker":
        from worker.main import run_worker

        return run_worker(settings)
    return 2


if __name__ == "__main__":
    sys.exit(main())
