"""``veil-proxy run --config FILE`` serves; ``veil-proxy check --config FILE`` validates the
file, logs in once to each upstream database and asks Veil once, and says what failed.
``run --event-loop asyncio`` runs on asyncio's own loop even when uvloop is installed."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import sys
import urllib.error
import urllib.request

from veil_sdk.proxy.config import Config, ConfigError, load
from veil_sdk.proxy.logins import LOGIN_PATH
from veil_sdk.proxy.loops import EVENT_LOOPS, EventLoopUnavailable, loop_factory
from veil_sdk.proxy.upstream import UpstreamError, connect


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="veil-proxy", description="PostgreSQL proxy masking what Veil decides"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "serve clients"), ("check", "validate the configuration and connect once")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--config", required=True, help="TOML (or YAML) configuration file")
        if name == "run":
            command.add_argument(
                "--event-loop",
                choices=EVENT_LOOPS,
                help="overrides the file's event_loop (auto: uvloop when installed)",
            )
    arguments = parser.parse_args(argv)
    try:
        config = load(arguments.config)
    except ConfigError as exc:
        print(f"veil-proxy: {arguments.config}: {exc}", file=sys.stderr)
        return 2
    if arguments.command == "check":
        return asyncio.run(check(config))
    if arguments.event_loop:
        config = dataclasses.replace(config, event_loop=arguments.event_loop)
    try:
        new_loop, loop_name = loop_factory(config.event_loop)
    except EventLoopUnavailable as exc:
        print(f"veil-proxy: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(run(config, loop_name))
    return 0


async def run(config: Config, loop_name: str = "asyncio") -> None:
    from veil_sdk.proxy.rows import ROW_REWRITE
    from veil_sdk.proxy.server import ProxyServer

    server = ProxyServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):  # before the log line says it is up
        loop.add_signal_handler(signum, stop.set)
    port = await server.start()
    logging.getLogger("veil_sdk.proxy").info(
        "veil-proxy listening on %s:%s (event loop: %s, row rewrite: %s)",
        config.listen_host,
        port,
        loop_name,
        ROW_REWRITE,
    )
    serving = asyncio.create_task(server.serve_forever())
    await stop.wait()
    serving.cancel()
    await server.close()


async def check(config: Config) -> int:
    """Connect once to each configured database and to Veil; print one line per check."""
    failures = 0
    for instance in config.instances.values():
        for database in instance.databases:
            try:
                upstream = await connect(instance, database)
                await upstream.simple_query("SELECT 1")
                upstream.close()
                print(f"ok      {instance.name}/{database} as {instance.user}")
            except (UpstreamError, OSError) as exc:
                failures += 1
                print(f"FAILED  {instance.name}/{database}: {exc}")
    veil = await asyncio.to_thread(_check_veil, config)
    failures += veil is not None
    print(f"FAILED  Veil at {config.veil_url}: {veil}" if veil else f"ok      Veil at {config.veil_url}")
    return 1 if failures else 0


def _check_veil(config: Config) -> str | None:
    """None when Veil answers the login check with the proxy's token (an empty body is a 400 that
    proves the token and the path: 401/403 would mean the token is wrong or lacks a scope)."""
    request = urllib.request.Request(  # noqa: S310 - the config checks the scheme
        config.veil_url + LOGIN_PATH,
        data=b"{}",
        method="POST",
        headers={"Authorization": f"Bearer {config.veil_token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            response.read()
        return None
    except urllib.error.HTTPError as error:
        with error:
            body = error.read(4096)
        if error.code == 400:
            return None
        try:
            message = json.loads(body)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = "not Veil's API: is veil.url right?"
        return f"HTTP {error.code}: {message}"
    except OSError as exc:
        return f"unreachable ({exc})"


if __name__ == "__main__":
    sys.exit(main())
