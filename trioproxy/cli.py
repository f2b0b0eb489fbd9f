"""Command line: argument parsing and `trio.run`, nothing else."""

from __future__ import annotations

import argparse
import atexit
import logging
import logging.handlers
import os
import queue
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import trio

from trioproxy import __version__
from trioproxy.admin import callers_cli as callers_command
from trioproxy.audit import cli as audit_command
from trioproxy.config import (
    SETTINGS,
    Config,
    ConfigError,
    ProviderConfig,
    binding_problem,
    effective_settings,
    load_config,
    parse_hostport,
)
from trioproxy.convlog import export_cli as log_command
from trioproxy.sdnotify import notify
from trioproxy.workers.channel import WorkerFds

log = logging.getLogger("trioproxy")
DEFAULT_LISTEN = next(s.default for s in SETTINGS if s.key == "listen")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trioproxy", description="Streaming reverse proxy for the Anthropic Claude API"
    )
    p.add_argument("--version", action="version", version=f"trioproxy {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the proxy")
    check = sub.add_parser(
        "check-config", help="validate the configuration and print it (secrets redacted)"
    )
    for sp in (serve, check):
        sp.add_argument("--config", metavar="FILE", help="TOML configuration file")
        sp.add_argument("--listen", metavar="HOST:PORT", help="overrides TRIOPROXY_LISTEN")
        sp.add_argument("--upstream", metavar="URL", help="overrides TRIOPROXY_UPSTREAM")
        sp.add_argument(
            "--workers",
            metavar="N",
            help='worker processes, or "auto"; overrides TRIOPROXY_WORKERS',
        )
    # Internal: how the supervisor starts a worker (see trioproxy/workers/).
    serve.add_argument("--worker-fds", help=argparse.SUPPRESS)
    sw = sub.add_parser(
        "switch",
        help="route a running proxy to one provider, or back to failover (POST /admin/route)",
    )
    target = sw.add_mutually_exclusive_group(required=True)
    target.add_argument("provider", nargs="?", help="the provider to use alone (single mode)")
    target.add_argument("--failover", action="store_true", help="back to failover mode")
    sw.add_argument("--config", metavar="FILE", help="the proxy's TOML file (to find its address)")
    sw.add_argument(
        "--env-file", metavar="FILE", help="a systemd EnvironmentFile with TRIOPROXY_* settings"
    )
    sw.add_argument("--url", help="the proxy's base URL (default: from the configuration)")
    sw.add_argument("--token", help="admin token (default: TRIOPROXY_ADMIN_TOKEN / admin.token)")
    sw.add_argument("--cacert", metavar="FILE", help="CA to verify an https listener with")
    sw.add_argument(
        "--insecure", action="store_true", help="do not verify the listener's certificate"
    )
    usage = sub.add_parser(
        "usage", help="requests, tokens and estimated cost from the usage ledger"
    )
    usage.add_argument("--since", default="7d", help="7d, 24h, 30m, 2w or 2026-11-01 (UTC)")
    usage.add_argument(
        "--by",
        choices=("caller", "model", "provider", "request_class", "agent_type", "day"),
        default="model",
        help="group by (request_class, agent_type: Claude Code's hint headers)",
    )
    usage.add_argument("--format", choices=("table", "csv", "json"), default="table")
    usage.add_argument(
        "--config", metavar="FILE", help="the proxy's TOML file (state_dir, [pricing])"
    )
    usage.add_argument(
        "--env-file", metavar="FILE", help="a systemd EnvironmentFile with TRIOPROXY_* settings"
    )
    usage.add_argument("--state-dir", help="where the ledger is (default: from the configuration)")
    callers_command.add_parser(sub)
    log_command.add_parser(sub)
    audit_command.add_parser(sub)
    fake = sub.add_parser(
        "fake-upstream", help="run the fake Anthropic API alone (HTTP/1.1 and h2c)"
    )
    fake.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:8788")
    dialect = fake.add_mutually_exclusive_group()
    dialect.add_argument(
        "--openai",
        action="store_true",
        help="the Chat Completions API instead (POST .../chat/completions)",
    )
    dialect.add_argument(
        "--bedrock",
        action="store_true",
        help="Amazon Bedrock's runtime instead (SigV4 checked; region us-east-1; any access "
        "key the fake issued: see fake/sigv4.py)",
    )
    dialect.add_argument(
        "--vertex",
        action="store_true",
        help="Google Cloud Vertex AI instead, with its own token endpoint (POST /token)",
    )
    fake.add_argument(
        "--service-account",
        metavar="FILE",
        help="with --vertex: write a service account key the fake accepts to FILE",
    )
    demo = sub.add_parser(
        "demo", help="fake upstream + proxy + a sample streaming request; keeps running"
    )
    demo.add_argument("--listen", metavar="HOST:PORT", default=DEFAULT_LISTEN)
    demo_kind = demo.add_mutually_exclusive_group()
    demo_kind.add_argument(
        "--openai",
        action="store_true",
        help="the fake speaks Chat Completions; the proxy translates (a provider of kind openai)",
    )
    demo_kind.add_argument(
        "--bedrock",
        action="store_true",
        help="the fake is Amazon Bedrock; the proxy signs and translates (a provider of kind bedrock)",
    )
    demo_kind.add_argument(
        "--vertex",
        action="store_true",
        help="the fake is Vertex AI with its token endpoint (a provider of kind vertex)",
    )
    dev = sub.add_parser(
        "dev-cert", help="write a local test CA and server certificate (not for production)"
    )
    dev.add_argument(
        "--dir", default="trioproxy-dev-cert", help="where to write ca.pem, cert.pem, key.pem"
    )
    dev.add_argument(
        "--hosts",
        default="localhost,127.0.0.1,::1",
        help="names and addresses the certificate covers",
    )
    return p


class _Formatter(logging.Formatter):
    """Access lines are printed bare (one JSON or logfmt document per line, for
    machines); everything else with time, level and logger name."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "trioproxy.access":
            return record.getMessage()
        return super().format(record)


def _setup_logging(level: str, worker: int | None = None) -> None:
    """Log records go through a queue to a writer thread: a slow stderr (a full
    pipe, a busy journald) never blocks the event loop. A worker's lines
    (not its access lines) name it."""
    handler = logging.StreamHandler(sys.stderr)
    who = "%(name)s" if worker is None else f"%(name)s[worker {worker}]"
    handler.setFormatter(_Formatter(f"%(asctime)s %(levelname)s {who}: %(message)s"))
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(q, handler)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(q)]
    root.setLevel(getattr(logging, level.upper()))
    # h2/hpack log every frame at DEBUG: unreadable, and it slows the hot path.
    for noisy in ("hpack", "h2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    listener.start()
    atexit.register(listener.stop)  # flush what is queued at exit


async def _run_supervisor(config: Config, loader: Callable[[], Config], argv: list[str]) -> int:
    from trioproxy.workers.supervisor import Supervisor

    sup = Supervisor(config, argv, loader=loader, notify=notify, cpus=len(os.sched_getaffinity(0)))
    await sup.bind()  # an address in use: ConfigError, before any worker starts

    def ready(port: int, workers: int) -> None:
        scheme = "https" if config.tls else "http"
        log.info(
            "trioproxy %s listening on %s://%s:%d -> %s (%d worker%s)",
            __version__,
            scheme,
            config.listen.host,
            port,
            ", ".join(f"{p.name}={p.upstream.origin}" for p in config.routing.providers),
            workers,
            "" if workers == 1 else "s",
        )
        # Only now, with every worker accepting, is the service ready (Type=notify).
        notify(f"READY=1\nSTATUS=listening on {config.listen.host}:{port}")

    return await sup.run(ready)


def _cloud_source(provider: ProviderConfig) -> str:
    """Where a cloud provider's credentials would come from (no cloud called)."""
    if provider.kind == "vertex":
        from trioproxy.upstream.gcp import credential_source as google_source

        return f"project {provider.project}: " + google_source(
            provider.credentials_file, os.environ
        )
    from trioproxy.upstream.aws import credential_source as aws_source

    return "AWS: " + aws_source(provider.aws_profile, os.environ)


async def _run_fake(config: Config, kind: str = "anthropic", key_file: str = "") -> int:
    from trioproxy.fake.app import FakeUpstream
    from trioproxy.fake.bedrock_app import BedrockFake
    from trioproxy.fake.openai_app import OpenAIFake
    from trioproxy.fake.vertex_app import VertexFake
    from trioproxy.server import Server

    server = Server(config)
    await server.bind(admin=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve_signals)

        async def _serve(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
            await server.serve_app(app, task_status=task_status)
            nursery.cancel_scope.cancel()

        makers = {"openai": OpenAIFake, "bedrock": BedrockFake, "vertex": VertexFake}
        app = makers.get(kind, FakeUpstream)()
        port = await nursery.start(_serve)
        if isinstance(app, VertexFake) and key_file:
            token_uri = f"http://{config.listen.host}:{port}/token"
            await trio.to_thread.run_sync(app.service_account_key, Path(key_file), token_uri)
            log.info("a service account key for it: %s", key_file)
        log.info(
            "fake %s upstream listening on http://%s:%d (HTTP/1.1 and h2c)",
            {"openai": "Chat Completions", "bedrock": "Bedrock", "vertex": "Vertex AI"}.get(
                kind, "Anthropic"
            ),
            config.listen.host,
            port,
        )
    return 0


def _dev_cert(directory: str, hosts: str) -> int:

    from trioproxy.devcert import write_dev_cert

    paths = write_dev_cert(Path(directory), [h.strip() for h in hosts.split(",") if h.strip()])
    ca, cert, key = (paths[k].resolve() for k in ("ca", "cert", "key"))
    print(f"wrote {ca}, {cert}, {key} (for tests only, not production)")
    print(f"export TRIOPROXY_TLS_CERT={cert} TRIOPROXY_TLS_KEY={key}")
    print(f"clients trust it with SSL_CERT_FILE={ca} (Python) or NODE_EXTRA_CA_CERTS={ca} (Node)")
    return 0


def _switch(args: argparse.Namespace) -> int:
    from trioproxy.admin.client import (
        SwitchError,
        admin_target,
        format_providers,
        read_env_file,
        switch,
    )

    try:
        env = dict(os.environ)
        if args.env_file:
            env = {**read_env_file(args.env_file), **env}
        url, token = admin_target(args.config, env)
        mode, providers = switch(
            args.url or url,
            args.token if args.token is not None else token,
            None if args.failover else args.provider,
            cafile=args.cacert,
            insecure=args.insecure,
        )
    except SwitchError as exc:
        print(f"trioproxy switch: {exc}", file=sys.stderr)
        return 1
    described = f"single ({mode['provider']})" if mode["mode"] == "single" else "failover"
    print(f"routing: {described}")
    print(format_providers(providers))
    return 0


def _usage(args: argparse.Namespace) -> int:
    import time

    from trioproxy.accounting.report import (
        UsageError,
        parse_since,
        render,
        settings_from,
        summarize,
    )

    try:
        where = settings_from(args.config, args.env_file)
        since = parse_since(args.since, time.time())
        lines, total = summarize(
            args.state_dir or where.state_dir,
            since=since,
            by=args.by,
            prices=where.prices,
            database_url="" if args.state_dir else where.database_url,
        )
    except UsageError as exc:
        print(f"trioproxy usage: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(render(lines, total, by=args.by, fmt=args.format, since=since))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "usage":
        return _usage(args)
    if args.command == "dev-cert":
        return _dev_cert(args.dir, args.hosts)
    if args.command == "switch":
        return _switch(args)
    if args.command == "callers":
        return callers_command.run(args)
    if args.command == "log":
        return log_command.run(args)
    if args.command == "audit":
        return audit_command.run(args)
    try:
        if args.command in ("serve", "check-config"):
            overrides = {
                "listen": args.listen,
                "upstream.url": args.upstream,
                "workers": args.workers,
            }
            config = load_config(args.config, overrides=overrides)
            problem = binding_problem(config)
            if problem:
                raise ConfigError(problem)
        else:
            parse_hostport(args.listen, "--listen")
            config = load_config(
                env={k: v for k, v in os.environ.items() if k == "TRIOPROXY_LOG_LEVEL"},
                # A fake upstream (or the demo's) has nobody to warn: stop at once.
                overrides={"listen": args.listen, "timeouts.drain_grace": 0},
            )
    except ConfigError as exc:
        print(f"trioproxy: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print("# effective trioproxy configuration")
        for key, env, shown in effective_settings(config):
            print(f"{key} = {shown}    # {env}")
        problems: list[str] = []
        for p in config.routing.providers:
            cred = "key set" if p.upstream.credential else "no key: passthrough"
            if p.cloud:
                try:
                    cred = f"{p.region}, credentials from {_cloud_source(p)}"
                except LookupError as exc:
                    problems.append(f"providers[{p.name}]: {exc}")
                    cred = "no credentials"
            print(
                f"# provider {p.name} ({p.kind}): {p.upstream.origin} priority={p.priority} "
                f"family={p.family} {'enabled' if p.enabled else 'disabled'} ({cred})"
            )
        for problem in problems:
            print(f"trioproxy: {problem}", file=sys.stderr)
        return 2 if problems else 0
    worker_fds = getattr(args, "worker_fds", None)
    try:
        fds = WorkerFds.parse(worker_fds) if worker_fds else None
    except ValueError as exc:
        print(f"trioproxy: {exc}", file=sys.stderr)
        return 2
    _setup_logging(config.log_level, None if fds is None else fds.slot)
    try:
        if args.command == "serve":
            loader = partial(load_config, args.config, overrides=overrides)
            if fds is not None:
                from trioproxy.workers.worker import run_worker

                return trio.run(run_worker, config, loader, fds)
            return trio.run(
                _run_supervisor, config, loader, list(sys.argv[1:] if argv is None else argv)
            )
        if args.command == "fake-upstream":
            kind = next(
                (k for k in ("openai", "bedrock", "vertex") if getattr(args, k)), "anthropic"
            )
            return trio.run(_run_fake, config, kind, args.service_account or "")
        from trioproxy.config import parse_hostport as _hp
        from trioproxy.demo import run_demo

        demo_kind = next(
            (k for k in ("openai", "bedrock", "vertex") if getattr(args, k)), "anthropic"
        )
        trio.run(partial(run_demo, kind=demo_kind), _hp(args.listen, "--listen"), dict(os.environ))
        return 0
    except (ConfigError, BaseExceptionGroup) as exc:
        error = _config_error(exc)
        if error is None:
            raise
        print(f"trioproxy: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _config_error(exc: BaseException) -> ConfigError | None:
    """The start-up error (an address in use, say) in what trio.run raised,
    possibly inside a nursery's exception group: one line, not a traceback."""
    if isinstance(exc, ConfigError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _config_error(inner)) is not None:
                return found
    return None
