"""``veil-mcp``: run the MCP server over stdio (default) or streamable HTTP.

Configuration comes from the environment so that the token is never on a command line (where
``ps`` shows it): ``VEIL_URL``, ``VEIL_TOKEN`` (or ``VEIL_TOKEN_FILE``), ``VEIL_MCP_DSN`` (the
source database, libpq form or URL; or ``VEIL_MCP_DSN_FILE``), and for streamable HTTP
``VEIL_MCP_HTTP_TOKEN`` (or ``VEIL_MCP_HTTP_TOKEN_FILE``): the bearer token its clients send,
required unless it listens on loopback only. The rest are options.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from veil_sdk.mcp.server import Agent, HttpToken, Settings, build_server

__all__ = ["main"]


def _secret(name: str, *, required: bool = True) -> str:
    if path := os.environ.get(f"{name}_FILE"):
        return Path(path).read_text().strip()
    value = os.environ.get(name, "")
    if not value and required:
        raise SystemExit(f"veil-mcp: set {name} (or {name}_FILE)")
    return value


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name may resolve to anything


def _http_token(host: str) -> HttpToken | None:
    """The bearer token HTTP clients must send; none only on a loopback address, said on stderr."""
    token = _secret("VEIL_MCP_HTTP_TOKEN", required=False)
    if not token:
        if not _loopback(host):
            raise SystemExit(
                f"veil-mcp: set VEIL_MCP_HTTP_TOKEN (or VEIL_MCP_HTTP_TOKEN_FILE) to listen on {host}: "
                "off loopback, streamable HTTP answers only clients that send it"
            )
        print(
            "veil-mcp: no VEIL_MCP_HTTP_TOKEN: anyone on this machine who reaches the port queries "
            "as the agent",
            file=sys.stderr,
        )
        return None
    try:
        return HttpToken(token)
    except ValueError as error:
        raise SystemExit(f"veil-mcp: VEIL_MCP_HTTP_TOKEN: {error}") from None


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="veil-mcp", description=__doc__.splitlines()[0])
    parser.add_argument("--service-account", required=True, help="the agent's service account in Veil")
    parser.add_argument("--instance", required=True, help="the database instance as Veil's catalog names it")
    parser.add_argument("--database", help="the database as Veil's catalog names it (default: the DSN's)")
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1", help="streamable HTTP: address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="streamable HTTP: port")
    parser.add_argument("--max-rows", type=int, default=200, help="most rows a query answers")
    parser.add_argument("--statement-timeout", type=float, default=15.0, help="seconds a query may run")
    args = parser.parse_args(argv)
    veil_url = os.environ.get("VEIL_URL", "")
    if not veil_url:
        raise SystemExit("veil-mcp: set VEIL_URL")
    try:
        settings = Settings(
            veil_url=veil_url,
            token=_secret("VEIL_TOKEN"),
            service_account=args.service_account,
            dsn=_secret("VEIL_MCP_DSN"),
            instance=args.instance,
            database=args.database,
            max_rows=args.max_rows,
            statement_timeout_s=args.statement_timeout,
        )
    except ValueError as error:
        raise SystemExit(f"veil-mcp: {error}") from None
    http_token = _http_token(args.host) if args.transport == "streamable-http" else None
    agent = Agent(settings)
    server = build_server(settings, agent=agent, http_token=http_token)
    # SIGTERM (a container stopped) unwinds like Ctrl-C, through the finally below. uvicorn
    # shuts HTTP down gracefully first, then raises the signal again, which lands here.
    signal.signal(signal.SIGTERM, _exit)
    try:
        if args.transport == "stdio":
            server.run("stdio")
        else:
            server.run("streamable-http", host=args.host, port=args.port)
    finally:
        # The client's sender thread is a daemon: without this, the access events of the last
        # queries before the client hangs up (stdin closed, SIGTERM) would be lost.
        agent.close()


if __name__ == "__main__":
    main(sys.argv[1:])
