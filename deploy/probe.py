"""Container health probe: `python deploy/probe.py /readyz` exits 0 when Veil answers 200.

Standard library only, so a probe every few seconds costs a bare interpreter start, not Django's.
It sends a Host header Veil accepts (the first of ALLOWED_HOSTS; a leading dot or `*` falls back to
localhost) because Django refuses a request whose Host is not listed, whatever its path.
"""

from __future__ import annotations

import http.client
import os
import sys


def probe_host() -> str:
    first = next((h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()), "")
    if not first or first == "*":
        return "localhost"
    return first.lstrip(".")


def main(path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", int(os.environ.get("PORT", "8000")), timeout=5)
    try:
        conn.request("GET", path, headers={"Host": probe_host()})
        status = conn.getresponse().status
    except OSError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if status != 200:
        print(f"{path}: HTTP {status}", file=sys.stderr)
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/healthz"))
