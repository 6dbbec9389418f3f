"""A real Postfix MTA for the tests (Debian's), started with its own configuration, queue and log in a scratch
directory, its SMTP server on a loopback port, and stopped after; the machine's own Postfix is never touched.

Its domains: ``local.example.org`` (local(8), any user accepted at RCPT and refused at delivery when there is no such
account: Postfix's own DSN follows), ``full.example.org`` (handed to an LMTP server, Dovecot with a quota), and
``bounce.example.org`` (virtual(8) into the Maildir ``mail/bounces/``, ``+`` as the recipient delimiter: where VERP
return paths end up). Nothing leaves the machine."""

from __future__ import annotations

import os
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

MASTER = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


@dataclass(frozen=True)
class Mta:
    port: int
    # The Maildir that bounce.example.org delivers to.
    bounces: Path
    log: Path

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


def _postfix(conf: Path, command: str) -> subprocess.CompletedProcess[str]:
    # Postfix says why it will not start on a terminal only: script(1) gives it one.
    return subprocess.run(
        ["script", "-qec", f"postfix -c {conf} {command}", "/dev/null"], capture_output=True, text=True, timeout=120
    )


@contextmanager
def postfix(lmtp_port: int) -> Iterator[Mta]:
    if not shutil.which("postfix") and not Path("/usr/sbin/postfix").exists():
        pytest.skip("postfix is needed (`make system-packages` installs it)")
    if os.getuid() != 0 or not shutil.which("script"):
        pytest.skip("a Postfix of the test's own must be started as root (CI runs as root)")
    root = Path(tempfile.mkdtemp(prefix="digest-postfix-"))
    root.chmod(0o755)
    conf, mail = root / "conf", root / "mail"
    conf.mkdir()
    mail.mkdir(mode=0o777)
    mail.chmod(0o777)
    (root / "queue").mkdir()
    (root / "data").mkdir()
    shutil.chown(root / "data", "postfix")
    port = free_port()
    (conf / "mailboxes").write_text("bounces@bounce.example.org bounces/\n")
    (conf / "transport").write_text(f"full.example.org lmtp:inet:127.0.0.1:{lmtp_port}\n")
    (conf / "main.cf").write_text(
        f"""compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file_prefixes = {root}
maillog_file = {root}/maillog
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.local.example.org
mydomain = local.example.org
myorigin = local.example.org
mydestination = local.example.org
mynetworks = 127.0.0.0/8
local_recipient_maps =
alias_maps =
alias_database =
recipient_delimiter = +
relay_domains = full.example.org
transport_maps = texthash:{conf}/transport
virtual_mailbox_domains = bounce.example.org
virtual_mailbox_base = {mail}
virtual_mailbox_maps = texthash:{conf}/mailboxes
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
bounce_size_limit = 2000
smtpd_banner = $myhostname ESMTP
biff = no
default_transport = error:5.4.4 no outbound mail in this test
smtp_dns_support_level = disabled
lmtp_host_lookup = native
"""
    )
    (conf / "master.cf").write_text(MASTER.format(port=port))
    try:
        started = _postfix(conf, "start")
        if started.returncode != 0:
            raise RuntimeError(f"postfix did not start: {started.stdout} {started.stderr}")
        deadline = time.monotonic() + 60  # generous: a busy machine starts it slowly
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("postfix did not listen: " + (root / "maillog").read_text()) from None
                time.sleep(0.1)
        yield Mta(port, mail / "bounces", root / "maillog")
    finally:
        pidfile = root / "queue" / "pid" / "master.pid"
        master = int(pidfile.read_text().split()[0]) if pidfile.exists() else 0
        _postfix(conf, "stop")
        deadline = time.monotonic() + 30  # generous: its daemons finish what they hold first
        while master and _alive(master) and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for_mail(maildir: Path, count: int, log: Path, seconds: float = 90) -> list[Path]:
    """The messages delivered to ``maildir`` once there are ``count`` (generous deadline: a queue on a busy
    machine), or a failure that shows Postfix's log."""
    deadline = time.monotonic() + seconds
    while True:
        found = sorted((maildir / "new").glob("*")) if (maildir / "new").is_dir() else []
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, f"{len(found)} of {count} in {maildir}; Postfix said:\n" + log.read_text()
            return found
        time.sleep(0.2)
