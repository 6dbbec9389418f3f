"""A real IMAP server for the tests: Debian's Dovecot, started with its own configuration in a scratch directory,
listening for IMAP over TLS on a loopback port with a self-signed certificate, one user, and stopped after. It
never touches the machine's own Dovecot (not its configuration, ports, sockets or mail)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port

USER = "bounces"
PASSWORD = "s3cret-imap-pass"  # a test's own: what the tests check never shows up in a log or a report


@dataclass(frozen=True)
class Imap:
    port: int
    # The CA a client must trust (the server's self-signed certificate).
    certificate: Path
    # Where LMTP is served (0: not), for an MTA in front of it; every mailbox then has quota_kb (dovecot(quota_kb=)).
    lmtp_port: int = 0

    def url(self, folder: str = "INBOX", password: str = PASSWORD) -> str:
        return f"imaps://{USER}:{password}@127.0.0.1:{self.port}/{folder}"


def _users() -> tuple[str, str]:
    """Dovecot's unprivileged users: its own as root (made by the Debian package), else whoever runs the tests."""
    if os.getuid() == 0:
        return "dovecot", "dovenull"
    me = pwd.getpwuid(os.getuid()).pw_name
    return me, me


@contextmanager
def dovecot(quota_kb: int | None = None) -> Iterator[Imap]:
    """Dovecot serving IMAP over TLS; with ``quota_kb``, also LMTP (any user, each mailbox holding that much: a full
    mailbox behind an MTA)."""
    binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
    if binary is None or not shutil.which("openssl"):
        pytest.skip("dovecot-imapd and openssl are needed (`make system-packages` installs them)")
    # Not under pytest's tmp_path: Dovecot's unprivileged processes must reach the mail directory.
    root = Path(tempfile.mkdtemp(prefix="digest-dovecot-"))
    root.chmod(0o755)
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(root / "key.pem"), "-out", str(root / "cert.pem")],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        (root / "mail").mkdir(mode=0o777)
        (root / "mail").chmod(0o777)
        (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        internal, login = _users()
        port = free_port()
        lmtp_port = free_port() if quota_kb is not None else 0
        lmtp = (
            f"""protocols = imap lmtp
mail_plugins = quota
plugin {{
  quota = maildir:User quota
  quota_rule = *:storage={quota_kb}K
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
"""
            if quota_kb is not None
            else "protocols = imap\n"
        )
        (root / "dovecot.conf").write_text(
            lmtp
            + f"""base_dir = {root}/run
state_dir = {root}/run
log_path = {root}/dovecot.log
listen = 127.0.0.1
ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = {root}/users
}}
userdb {{
  driver = static
  args = uid={internal} gid={pwd.getpwnam(internal).pw_gid} home={root}/mail/%u allow_all_users=yes
}}
mail_location = maildir:{root}/mail/%u/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""
        )
        server = subprocess.Popen([binary, "-F", "-c", str(root / "dovecot.conf")], stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60  # generous: a busy machine starts it slowly
            while True:
                try:
                    for listening in (port, lmtp_port) if lmtp_port else (port,):
                        socket.create_connection(("127.0.0.1", listening), timeout=2).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                        raise RuntimeError(f"dovecot did not start (exit code {server.poll()}): {log}") from None
                    time.sleep(0.1)
            yield Imap(port, root / "cert.pem", lmtp_port)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)
