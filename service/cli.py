"""The `glassbox` command: `up`, `api`, `worker`, `openapi`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from pydantic import ValidationError

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
    up.add_argument("--workers", type=_at_least_one, default=1, help="worker processes (default 1)")
    up.add_argument("--no-access-log", dest="access_log", action="store_false")

    api = commands.add_parser("api", help="run the HTTP API (configured by GLASSBOX_* variables)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--no-access-log", dest="access_log", action="store_false")
    # Set by `glassbox up`: /readyz then says the worker is the supervisor's to start.
    api.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)

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
    jobs.add_argument("--limit", type=_at_least_one, default=20)
    return parser


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=os.environ.get("GLASSBOX_URL", DEFAULT_URL), help="the service (env GLASSBOX_URL)"
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("GLASSBOX_API_KEY"), help="your API key (env GLASSBOX_API_KEY)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS", help="longest wait for one answer (default 60)"
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


class _Session:
    """What a client command has done so far, for saying where a failure left things."""

    def __init__(self) -> None:
        self.job_id: str | None = None
        self.bar_drawn = False

    def progress_bar(self, progress) -> None:
        width = 30
        filled = int(round(progress.fraction * width))
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {progress.fraction * 100:5.1f}% {progress.message[:50]:<50}"
        )
        sys.stderr.flush()
        self.bar_drawn = True

    def end_bar(self) -> None:
        if self.bar_drawn:
            sys.stderr.write("\n")
            self.bar_drawn = False


def run_command(args: argparse.Namespace, session: _Session) -> int:
    from service.client import Client

    try:
        params = parse_params(args.param, args.params)
    except (ValueError, json.JSONDecodeError) as exc:
        print(f"glassbox run: {exc}", file=sys.stderr)
        return 2
    with Client(args.url, args.api_key, timeout=args.timeout) as client:
        job = client.submit(args.kind, args.model, params)
        session.job_id = job.id
        print(f"job {job.id} {job.status}", file=sys.stderr)
        if not args.wait:
            print(job.id)
            return 0
        job = client.wait(job.id, on_progress=session.progress_bar)
        session.end_bar()
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


def jobs_command(args: argparse.Namespace, session: _Session) -> int:
    from service.client import Client

    with Client(args.url, args.api_key, timeout=args.timeout) as client:
        listed = client.jobs(status=args.status, kind=args.kind, page_size=min(200, args.limit))
        first = next(listed, None)  # fails, if it does, before the header is printed
        print(f"{'id':<26}  {'kind':<24} {'model':<28} {'status':<9} {'progress':>8}  created")
        for count, job in enumerate(_chain(first, listed)):
            if count >= args.limit:
                break
            print(
                f"{job.id:<26}  {job.kind[:24]:<24} {job.model[:28]:<28} {job.status:<9} "
                f"{job.progress.fraction * 100:7.1f}%  {job.created_at:%Y-%m-%d %H:%M:%S}"
            )
    return 0


def _chain(first, rest):
    if first is not None:
        yield first
        yield from rest


def client_command(args: argparse.Namespace) -> int:
    """`run` or `jobs`, with every failure said in one line naming the URL tried and what to do."""
    session = _Session()
    command = run_command if args.command == "run" else jobs_command
    try:
        return command(args, session)
    except (Exception, KeyboardInterrupt) as exc:
        session.end_bar()
        message = describe_failure(exc, args, session)
        if message is None:
            raise
        print(f"glassbox {args.command}: {' '.join(message.split())}", file=sys.stderr)
        return 1


def describe_failure(exc: BaseException, args: argparse.Namespace, session: _Session) -> str | None:
    """One sentence for a client command's failure (None: a bug, left to its traceback)."""
    import httpx
    from pydantic import ValidationError

    from service.client import GlassboxError

    url = getattr(exc, "url", None) or args.url
    if isinstance(exc, httpx.RequestError):
        try:
            url = str(exc.request.url)
        except RuntimeError:
            pass
    elsewhere = "point --url or GLASSBOX_URL at a running Glassbox"
    if isinstance(exc, KeyboardInterrupt):
        if session.job_id is None:
            return f"interrupted before {url} accepted a job; nothing was submitted"
        return (
            f"interrupted; job {session.job_id} goes on at {url} (`glassbox jobs` lists it; "
            f"POST {url.rstrip('/')}/v1/jobs/{session.job_id}/cancel stops it)"
        )
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return f"{args.url!r} is not a usable URL ({exc}); give one like {DEFAULT_URL} with --url or GLASSBOX_URL"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect to {url} ({exc}); start the service with `glassbox up`, or {elsewhere}"
    if isinstance(exc, httpx.TimeoutException):
        return f"{url} did not answer within {args.timeout:g} s; check the service's log, or raise --timeout"
    if isinstance(exc, httpx.HTTPError):
        return f"the connection to {url} failed ({type(exc).__name__}: {exc}); retry, or check the service's log"
    if isinstance(exc, GlassboxError):
        hints = {
            401: "pass your key with --api-key or GLASSBOX_API_KEY",
            403: "this key may not do that",
            404: "check the id" if exc.type else f"is {args.url} a Glassbox service? {elsewhere}",
            413: "send less",
            422: "correct what is named (GET /v1/kinds lists each kind's params)",
        }
        hint = hints.get(exc.status, "retry later; the service's log says more" if exc.status >= 500 else "")
        what = f"{exc.title}: {exc.detail}" if exc.detail else exc.title
        return f"{url} answered {exc.status} {what}" + (f"; {hint}" if hint else "")
    if isinstance(exc, (ValidationError, json.JSONDecodeError)):
        return f"{url} did not answer as a Glassbox API does; {elsewhere}"
    if isinstance(exc, OSError) and exc.filename:
        return f"cannot write {exc.filename} ({exc.strerror}); choose another --out"
    return None


def settings_from_environment() -> Settings:
    """The settings, or one line per variable that is set wrong (and exit 1), not a traceback."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = [
            f"glassbox: GLASSBOX_{str(error['loc'][0]).upper()}={error.get('input')!r}: {error['msg']}"
            if error["loc"]
            else f"glassbox: the settings: {error['msg']}"
            for error in exc.errors(include_url=False)
        ]
        raise SystemExit("\n".join(lines)) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "openapi":
        from service.app import create_app

        # Plugins are deployment-specific; the published document is the service's own.
        document = create_app(Settings(plugins=[])).openapi()
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
        return 0
    if args.command in ("run", "jobs"):
        return client_command(args)
    settings = settings_from_environment()
    if args.command == "up":
        from service.supervisor import Supervisor

        return Supervisor(
            settings, host=args.host, port=args.port, workers=args.workers, access_log=args.access_log
        ).run()
    if args.command == "api":
        if not settings.redis_url:
            raise SystemExit("glassbox api needs GLASSBOX_REDIS_URL (or use `glassbox up`)")
        from service.api.serving import serve
        from service.app import create_app

        app = create_app(settings)
        app.state.supervised = args.supervised
        serve(app, host=args.host, port=args.port, log_level=settings.log_level, access_log=args.access_log)
        return 0
    if args.command == "worker":
        from worker.main import run_worker

        code = run_worker(settings)
        # Everything is settled (a running job is back in the queue, the worker forgotten);
        # tearing down torch's native state would take seconds of a Ctrl-C for nothing.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return 2


if __name__ == "__main__":
    sys.exit(main())
