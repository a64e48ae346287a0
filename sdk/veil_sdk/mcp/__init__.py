"""``veil-mcp``: a Model Context Protocol server that gives an AI agent SQL access through Veil.

The agent is a service account (its principal); its queries go through the data path
(``veil_sdk.psycopg``): the inference guard refuses probes, masked columns come back masked, every
query is an access event. It may read only (``SELECT``, ``WITH``, ``EXPLAIN``), at most a row and
time limit, and may ask for access (a JIT request attributed to its service account and owner).
The service account's Veil token stays in this process: no tool answer contains it.
Needs the ``mcp`` extra (the official MCP Python SDK) besides the ``datapath`` one.
"""

from veil_sdk.mcp.server import Settings, build_server

__all__ = ["Settings", "build_server"]
