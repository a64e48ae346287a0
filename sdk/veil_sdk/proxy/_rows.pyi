from collections.abc import Callable
from typing import Any

def rewrite(
    rows: bytes | memoryview,
    out: list[bytes | memoryview],
    actions: tuple[Any, ...],
    count: int,
    encoding: str,
    careful: Callable[[bytes], bytes],
    failed: Callable[[BaseException], object],
) -> int: ...
