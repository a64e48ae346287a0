"""How a person connects a database client to veil-proxy: the strings the Database access page shows.

The user name is the name Veil's decisions know the person by (`decision_login`) and the password
is their access token. Values are quoted for libpq's conninfo, the shell and JDBC's URL, because a
username from the IdP (`preferred_username`) may hold any character.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings

_CONNINFO_PLAIN = re.compile(r"[^\s'\\]+")
_SHELL_DOUBLE_QUOTE_SAFE = re.compile(r'[^"$`\\!]*')


@dataclass(frozen=True)
class ProxyConnection:
    host: str
    port: int
    database: str
    sslmode: str
    user: str

    @classmethod
    def for_login(cls, user: str) -> ProxyConnection:
        """The proxy as settings describe it (VEIL_PROXY_*), for this login."""
        return cls(
            host=settings.VEIL_PROXY_HOST,
            port=settings.VEIL_PROXY_PORT,
            database=settings.VEIL_PROXY_DATABASE,
            sslmode=settings.VEIL_PROXY_SSLMODE,
            user=user,
        )

    def conninfo(self) -> str:
        """libpq's `key=value` connection string (no password: psql asks for it)."""
        pairs = [
            ("host", self.host),
            ("port", str(self.port)),
            ("user", self.user),
            ("dbname", self.database),
            ("sslmode", self.sslmode),
        ]
        return " ".join(f"{key}={_conninfo_value(value)}" for key, value in pairs)

    def psql_command(self) -> str:
        """`psql "host=... user=..."`, ready to paste into a POSIX shell."""
        conninfo = self.conninfo()
        if _SHELL_DOUBLE_QUOTE_SAFE.fullmatch(conninfo):
            return f'psql "{conninfo}"'
        return f"psql {shlex.quote(conninfo)}"

    def jdbc_url(self) -> str:
        """The PostgreSQL JDBC driver's URL, as DBeaver and other JDBC tools take it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = quote(self.user, safe="")
        return (
            f"jdbc:postgresql://{host}:{self.port}/{quote(self.database, safe='')}"
            f"?user={user}&sslmode={self.sslmode}"
        )

    def pgpass_line(self, password: str) -> str:
        """A `~/.pgpass` line, so psql and other libpq clients stop asking for the password."""
        fields = (self.host, str(self.port), self.database, self.user, password)
        return ":".join(value.replace("\\", "\\\\").replace(":", "\\:") for value in fields)


def _conninfo_value(value: str) -> str:
    if _CONNINFO_PLAIN.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"
