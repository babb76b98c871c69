"""A real IMAP server for tests: Dovecot with its own configuration, run and mail folders
under a temporary folder, listening on 127.0.0.1 only, TLS with a certificate from the
tests' own CA (trustme), one user from a password file.

Debian's ``dovecot-imapd`` package provides the programs (``make test`` installs it as
root); the system's own Dovecot configuration is neither read nor touched.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import trustme

from tests.daemons import free_port, log_tail, stop_by_pid_file, wait_for_port

__all__ = ["Dovecot", "dovecot_missing"]

USER = "bounces"


def dovecot_missing() -> str | None:
    """Why a test Dovecot cannot run here, or None when it can."""
    if shutil.which("dovecot") is None:
        return "Dovecot is not installed (make test installs Debian's dovecot-imapd as root)"
    if os.geteuid() != 0:
        return "starting Dovecot needs root"
    for user in ("dovecot", "dovenull"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"there is no {user} user (Debian's dovecot-core package makes it)"
    return None


class Dovecot:
    """Dovecot on ``imap_port`` (STARTTLS) and ``imaps_port`` (TLS); ``ca_file`` is the
    certificate to trust, ``password`` the user's."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: Dovecot's own users must be able to reach it.
        self.root = Path(tempfile.mkdtemp(prefix="digest-dovecot-"))
        self.root.chmod(0o755)
        self.password = "imap-test-password"
        self.imap_port, self.imaps_port = free_port(), free_port()
        self.ca_file = self.root / "ca.pem"
        self.log = self.root / "dovecot.log"

    def url(self, *, tls: bool = True, folder: str = "INBOX") -> str:
        """The source URL of the user's ``folder``."""
        if tls:
            return f"imaps://{USER}@127.0.0.1:{self.imaps_port}/{folder}"
        return f"imap://{USER}@127.0.0.1:{self.imap_port}/{folder}"

    def __enter__(self) -> Dovecot:
        owner = pwd.getpwnam("dovecot")
        for folder in ("run", "state", "mail"):
            (self.root / folder).mkdir()
        os.chown(self.root / "mail", owner.pw_uid, owner.pw_gid)
        authority = trustme.CA()
        issued = authority.issue_cert("127.0.0.1", "localhost")
        authority.cert_pem.write_to_path(str(self.ca_file))
        issued.private_key_pem.write_to_path(str(self.root / "key.pem"))
        (self.root / "cert.pem").write_bytes(
            b"".join(pem.bytes() for pem in issued.cert_chain_pems)
        )
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{self.password}::::::\n")
        root = self.root
        (root / "dovecot.conf").write_text(
            f"""\
base_dir = {root}/run
state_dir = {root}/state
log_path = {self.log}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = yes
auth_mechanisms = plain
first_valid_uid = 100
default_login_user = dovenull
default_internal_user = dovecot
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={root}/mail/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
  }}
}}
"""
        )
        # Not into pipes: the daemon keeps its standard streams, and a pipe would not end.
        with (root / "start.log").open("w") as output:
            started = subprocess.run(
                ["dovecot", "-c", str(root / "dovecot.conf")],
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=60,
                check=False,
            )
        if started.returncode != 0:
            said = (root / "start.log").read_text()
            shutil.rmtree(self.root, ignore_errors=True)
            raise RuntimeError(f"Dovecot did not start: {said} {self.tail()}")
        wait_for_port(self.imaps_port, "Dovecot", self.log)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stop_by_pid_file(self.root / "run" / "master.pid")
        shutil.rmtree(self.root, ignore_errors=True)

    def tail(self) -> str:
        """The end of Dovecot's log, for a failure message."""
        return log_tail(self.log)
