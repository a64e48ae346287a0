"""``veil_sdk.contrib.django``: Django's PostgreSQL backend (psycopg 3) with Veil's cursors."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base
from django.db.backends.postgresql.psycopg_any import register_tzloader
from django.utils.module_loading import import_string
from psycopg import pq

from veil_sdk.psycopg import VeilServerCursor, bind, veil_cursor_class


@cache
def _client(path: str) -> Any:
    return import_string(path)


class DatabaseWrapper(base.DatabaseWrapper):
    """Every cursor of this alias guards, masks and reports; see the package docstring."""

    def get_connection_params(self) -> dict[str, Any]:
        options = self.settings_dict["OPTIONS"]
        veil = options.pop("veil", None) or getattr(self, "_veil_options", None)
        if not isinstance(veil, dict) or not veil.get("client") or not veil.get("instance"):
            raise ImproperlyConfigured(
                f"DATABASES[{self.alias!r}]['OPTIONS']['veil'] needs 'client' (a dotted path) and 'instance'"
            )
        self._veil_options = veil
        params = super().get_connection_params()
        params["cursor_factory"] = veil_cursor_class(params["cursor_factory"])
        return params

    def create_cursor(self, name: str | None = None) -> Any:
        """Django builds its client-binding server-side cursor itself, bypassing the
        connection's factories: build Veil's version of that class instead."""
        if name and self.settings_dict["OPTIONS"].get("server_side_binding") is not True:
            cursor = veil_cursor_class(base.ServerSideCursor)(
                self.connection, name=name, scrollable=False, withhold=self.connection.autocommit
            )
            tzloader = self.connection.adapters.get_loader(base.TIMESTAMPTZ_OID, pq.Format.TEXT)
            if self.timezone != tzloader.timezone:
                register_tzloader(self.timezone, cursor)
            return cursor
        return super().create_cursor(name)

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        veil = self._veil_options
        connection.server_cursor_factory = VeilServerCursor
        bind(
            connection,
            client=_client(veil["client"]),
            principal=None,
            instance=veil["instance"],
            database=veil.get("database") or connection.info.dbname,
            guard_mode=veil.get("guard_mode"),
        )
        return connection
