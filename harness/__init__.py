"""What tests and benchmarks use to drive the service as its users do, kept out of the installed packages:
an aiortc client that measures what it receives (`probe`), the real service in a child process (`service`),
and loopback-only ICE for clients in this process (`loopback_only`)."""
from __future__ import annotations

from contextlib import AbstractContextManager

from streaming.ice import gather_only


def loopback_only(enabled: bool = True) -> AbstractContextManager[None]:
    """While active, every new ICE agent in this process gathers 127.0.0.1 only (clients in tests and benches; in
    network namespaces with only `lo`). An explicit call: nothing is patched on import."""
    return gather_only(("127.0.0.1",) if enabled else None)
