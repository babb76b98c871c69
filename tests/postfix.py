"""A real Postfix for tests: its own configuration, queue and mail folder under a temporary
folder, listening on 127.0.0.1 only, relaying everything to a test SMTP server.

It delivers mail for ``local_domain`` (any local part, ``+`` as the delimiter) into one
Maildir, ``mail/bounces/``: the bounces Postfix itself writes back to the envelope sender
land there. Debian's ``postfix`` package provides the programs (``make test`` installs it
as root); the system's own Postfix configuration is neither read nor touched. Starting
master needs root, as a real Postfix does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from tests.daemons import free_port, log_tail, stop_by_pid_file, wait_for_port

__all__ = ["DAEMONS", "Postfix", "postfix_missing"]

DAEMONS = Path("/usr/lib/postfix/sbin")

# The services of a Postfix that relays and delivers to virtual mailboxes, none chrooted.
_MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n - n 60   1 pickup
cleanup   unix  n - n -    0 cleanup
qmgr      unix  n - n 300  1 qmgr
rewrite   unix  - - n -    - trivial-rewrite
bounce    unix  - - n -    0 bounce
defer     unix  - - n -    0 bounce
trace     unix  - - n -    0 bounce
verify    unix  - - n -    1 verify
flush     unix  n - n 1000 0 flush
proxymap  unix  - - n -    - proxymap
smtp      unix  - - n -    - smtp
relay     unix  - - n -    - smtp
error     unix  - - n -    - error
retry     unix  - - n -    - error
discard   unix  - - n -    - discard
local     unix  - n n -    - local
virtual   unix  - n n -    - virtual
anvil     unix  - - n -    1 anvil
scache    unix  - - n -    1 scache
postlog   unix-dgram n - n - 1 postlogd
showq     unix  n - n -    - showq
"""


def postfix_missing() -> str | None:
    """Why a test Postfix cannot run here, or None when it can."""
    if not (DAEMONS / "master").exists() or shutil.which("postconf") is None:
        return "Postfix is not installed (make test installs Debian's postfix as root)"
    if os.geteuid() != 0:
        return "starting Postfix's master needs root"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "there is no postfix user (Debian's postfix package makes it)"
    return None


class Postfix:
    """A Postfix instance; ``port`` is its SMTP port, ``maildir`` where its bounces land."""

    def __init__(self, *, relay_port: int, local_domain: str) -> None:
        # Not under pytest's tmp_path: the postfix user must be able to reach it.
        self.root = Path(tempfile.mkdtemp(prefix="digest-postfix-"))
        self.root.chmod(0o755)
        self.config = self.root / "etc"
        self.maildir = self.root / "mail" / "bounces"
        self.log = self.root / "maillog"
        self.port = free_port()
        self.relay_port = relay_port
        self.local_domain = local_domain

    def __enter__(self) -> Postfix:
        user = pwd.getpwnam("postfix")
        for folder in ("etc", "queue", "data", "mail"):
            (self.root / folder).mkdir()
        os.chown(self.root / "data", user.pw_uid, user.pw_gid)
        os.chown(self.root / "mail", user.pw_uid, user.pw_gid)
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": self.root / "queue",
            "data_directory": self.root / "data",
            "meta_directory": "/etc/postfix",
            "maillog_file": self.log,
            "maillog_file_prefixes": self.root,
            "myhostname": "mx.digest-tests.test",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "relayhost": f"[127.0.0.1]:{self.relay_port}",
            "smtp_tls_security_level": "none",
            "virtual_mailbox_domains": self.local_domain,
            "virtual_mailbox_base": self.root / "mail",
            "virtual_mailbox_maps": "static:bounces/",
            "virtual_uid_maps": f"static:{user.pw_uid}",
            "virtual_gid_maps": f"static:{user.pw_gid}",
            "recipient_delimiter": "+",
            "alias_maps": "",
            "alias_database": "",
        }
        (self.config / "main.cf").write_text(
            "".join(f"{name} = {value}\n" for name, value in settings.items())
        )
        (self.config / "master.cf").write_text(_MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
        subprocess.run(
            [
                DAEMONS / "post-install",
                f"config_directory={self.config}",
                "meta_directory=/etc/postfix",
                "create-missing",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        # -w: returns once master is up, and fails if it could not start.
        # Not into pipes: the daemon keeps its standard streams, and a pipe would not end.
        started = subprocess.run(
            [DAEMONS / "master", "-c", self.config, "-w"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        if started.returncode != 0:
            raise RuntimeError(f"Postfix did not start: {self.tail()}")
        wait_for_port(self.port, "Postfix", self.log)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stop_by_pid_file(self.root / "queue" / "pid" / "master.pid")
        shutil.rmtree(self.root, ignore_errors=True)

    def bounces(self) -> list[Path]:
        """The messages delivered to the bounce Maildir so far."""
        folder = self.maildir / "new"
        return sorted(folder.iterdir()) if folder.exists() else []

    def tail(self) -> str:
        """The end of Postfix's log, for a failure message."""
        return log_tail(self.log)
