"""A tiny DNS server for tests: TXT records from a dict, over UDP on 127.0.0.1.

The public DNS is a boundary no test can reach; the resolver under test (dnspython's,
pointed here by ``check.nameservers``) still sends real queries and reads real answers.
A name not in the zone nor above any name in it is NXDOMAIN; a name that exists without
TXT records answers NOERROR with none. ``Silent`` never answers, as a machine without a
network would not.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

__all__ = ["DnsServer", "Silent", "txt_chunks"]


def txt_chunks(record: str) -> list[str]:
    """A TXT record as DNS carries it: strings of at most 255 bytes."""
    return [record[i : i + 255] for i in range(0, len(record), 255)] or [""]


class DnsServer:
    """Answers TXT queries from ``zone`` (name -> records) until closed."""

    def __init__(self, zone: Mapping[str, Sequence[str]], *, servfail: Sequence[str] = ()) -> None:
        self.zone = {name.lower().rstrip("."): list(records) for name, records in zone.items()}
        # Names answered with SERVFAIL, as a broken or unreachable authoritative server.
        self.servfail = {name.lower().rstrip(".") for name in servfail}
        self.queries: list[str] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self.port: int = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def nameservers(self) -> str:
        """The ``check.nameservers`` setting that points here."""
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> DnsServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(wire)
            self._socket.sendto(self._answer(query).to_wire(max_size=65535), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.queries.append(name)
        exists = name in self.zone or any(known.endswith("." + name) for known in self.zone)
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif not exists:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT and self.zone.get(name):
            texts = [
                " ".join(f'"{chunk}"' for chunk in txt_chunks(record)) for record in self.zone[name]
            ]
            response.answer.append(dns.rrset.from_text_list(question.name, 300, "IN", "TXT", texts))
        return response


class Silent:
    """A UDP port that takes queries and never answers."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]

    @property
    def nameservers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        self._socket.close()
