"""The `glassbox` command: `up`, `api`, `worker`, `openapi`."""

from __future__ import annotations

import argparse
import json
import os
import sys

from service.client import DEFAULT_URL
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

    run = commands.add_parser("run", help="submit a job to a running service (and wait for it)")
    _add_client_options(run)
    run.add_argument("kind", help="the job kind, e.g. deconvnet (GET /v1/kinds lists them)")
    run.add_argument("--model", required=True, help="the model id, e.g. shapes-cnn")
    run.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter; VALUE is JSON when it parses as JSON, else a string; dotted keys nest "
        "(-p objective.layer=features.6). Repeatable.",
    )
    run.add_argument("--params", default=None, metavar="JSON", help="parameters as one JSON object (then -p on top)")
    run.add_argument("--wait", action="store_true", help="follow the job with a progress bar until it ends")
    run.add_argument("--out", default=None, metavar="DIR", help="with --wait: save the artifacts here")

    jobs = commands.add_parser("jobs", help="list your jobs on a running service, newest first")
    _add_client_options(jobs)
    jobs.add_argument("--status", default=None)
    jobs.add_argument("--kind", default=None)
    jobs.add_argument("--limit", type=int, default=20)
    return parser


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=os.environ.get("GLASSBOX_URL", DEFAULT_URL), help="the service (env GLASSBOX_URL)"
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("GLASSBOX_API_KEY"), help="your API key (env GLASSBOX_API_KEY)"
    )


def parse_params(pairs: list[str], base: str | None = None) -> dict:
    """`-p` pairs (and a JSON object under them) into the params object of a job."""
    params = json.loads(base) if base else {}
    if not isinstance(params, dict):
        raise ValueError("--params must be a JSON object")
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        target = params
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ValueError(f"{key!r}: {part!r} is not an object")
        target[leaf] = value
    return params


def _progress_bar(progress) -> None:
    width = 30
    filled = int(round(progress.fraction * width))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {progress.fraction * 100:5.1f}% {progress.message[:50]:<50}")
    sys.stderr.flush()


def run_command(args: argparse.Namespace) -> int:
    from service.client import Client, GlassboxError

    try:
        params = parse_params(args.param, args.params)
    except (ValueError, json.JSONDecodeError) as exc:
        print(f"glassbox run: {exc}", file=sys.stderr)
        return 2
    with Client(args.url, args.api_key) as client:
        try:
            job = client.submit(args.kind, args.model, params)
            print(f"job {job.id} {job.status}", file=sys.stderr)
            if not args.wait:
                print(job.id)
                return 0
            job = client.wait(job.id, on_progress=_progress_bar)
            sys.stderr.write("\n")
            print(f"job {job.id} {job.status}", file=sys.stderr)
            if job.error is not None:
                print(f"{job.error.type}: {job.error.title}. {job.error.detail}", file=sys.stderr)
                return 1
            if job.status != "succeeded":
                return 1
            if args.out:
                for path in client.download(job, args.out):
                    print(path)
            else:
                print(json.dumps(job.result.summary if job.result else {}, indent=2))
            return 0
        except GlassboxError as exc:
            print(f"glassbox run: {exc.title}: {exc.detail}", file=sys.stderr)
            for error in exc.errors:
                print(f"  {'.'.join(map(str, error.get('loc', [])))}: {error.get('msg')}", file=sys.stderr)
            return 1


def jobs_command(args: argparse.Namespace) -> int:
    from service.client import Client, GlassboxError

    with Client(args.url, args.api_key) as client:
        try:
            print(f"{'id':<26}  {'kind':<24} {'model':<28} {'status':<9} {'progress':>8}  created")
            for count, job in enumerate(client.jobs(status=args.status, kind=args.kind, page_size=min(200, args.limit))):
                if count >= args.limit:
                    break
                print(
                    f"{job.id:<26}  {job.kind[:24]:<24} {job.model[:28]:<28} {job.status:<9} "
                    f"{job.progress.fraction * 100:7.1f}%  {job.created_at:%Y-%m-%d %H:%M:%S}"
                )
        except GlassboxError as exc:
            print(f"glassbox jobs: {exc.title}: {exc.detail}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "openapi":
        from service.app import create_app

        # Plugins are deployment-specific; the published document is the service's own.
        document = create_app(Settings(plugins=[])).openapi()
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
        return 0
    if args.command == "run":
        return run_command(args)
    if args.command == "jobs":
        return jobs_command(args)
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
