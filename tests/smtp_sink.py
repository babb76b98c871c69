"""An aiosmtpd sink in a process of its own: ``python -m tests.smtp_sink PORT FILE``.

It accepts every message and, on SIGTERM, writes the recipients it saw to FILE, one per
line. Several of them let a test with several sending processes use more than one core
for receiving.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class Recipients:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.seen.extend(envelope.rcpt_tos)
        return "250 OK"


def main() -> None:
    port, out = int(sys.argv[1]), Path(sys.argv[2])
    handler = Recipients()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("ready", flush=True)
    done.wait()
    controller.stop()
    out.write_text("".join(f"{address}\n" for address in handler.seen))


if __name__ == "__main__":
    main()
