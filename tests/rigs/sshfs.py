"""A real network share for tests: a private sshd on a loopback port and an sshfs mount of it.

Nothing of the machine's own ssh setup is used: the server gets its own host key, config file
and authorized key under the test's tmp folder, listens on 127.0.0.1 only, runs in the
foreground (`-D`) as a child of the test, and is stopped afterwards; the client gets a key of
its own and trusts no known_hosts. `Share.drop()` kills the sshfs process, as a network that
goes away does: every access to the mount then fails (ENOTCONN), and `close()` still cleans up.

    with sshd_server(tmp_path / "sshd") as server:
        with sshfs_mount(server, served=tmp_path / "served", mount=tmp_path / "share") as share:
            ...   # share.mount is the remote folder share.served, over SFTP

`missing()` says why it cannot be done here, for a skip with a reason.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rigs import in_mount_table, wait_mounted

SSHD = "/usr/sbin/sshd"
TOOLS = ("sshfs", "ssh", "ssh-keygen", "fusermount3")
# The privilege-separation folder Debian's sshd insists on (normally made by its service).
PRIVSEP = Path("/run/sshd")


def missing() -> str | None:
    """None when a private sshd and an sshfs mount can be made here, else why not."""
    absent = [t for t in TOOLS if shutil.which(t) is None]
    if not (os.access(SSHD, os.X_OK) or shutil.which("sshd")):
        absent.append("sshd")
    if absent:
        return (f"not installed: {', '.join(absent)} (Debian: sshfs, openssh-server, "
                "openssh-client, fuse3)")
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent"
    if os.geteuid() != 0 and not PRIVSEP.is_dir():
        return f"sshd needs {PRIVSEP}, which only root can make"
    return None


class RigError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass
class Server:
    port: int
    user: str
    client_key: Path
    proc: subprocess.Popen
    log: Path


@contextmanager
def sshd_server(home: Path) -> Iterator[Server]:
    """A private sshd on a free 127.0.0.1 port, accepting only a key made here."""
    home.mkdir(parents=True, exist_ok=True)
    host_key, client_key = home / "host_ed25519", home / "client_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    shutil.copyfile(str(client_key) + ".pub", home / "authorized_keys")
    if not PRIVSEP.is_dir():
        PRIVSEP.mkdir(mode=0o755, parents=True, exist_ok=True)
    sshd = SSHD if os.access(SSHD, os.X_OK) else shutil.which("sshd")
    user = getpass.getuser()
    proc = None
    last = ""
    try:
        for _ in range(5):  # the free port can be taken between the probe and sshd's bind
            port = _free_port()
            config = home / "sshd_config"
            config.write_text("\n".join([
                "ListenAddress 127.0.0.1",
                f"Port {port}",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {home / 'authorized_keys'}",
                f"AllowUsers {user}",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",  # the tmp folders are not the home's usual modes
                "PidFile none",
                "LogLevel INFO",
                "Subsystem sftp internal-sftp",
                "",
            ]))
            log = home / "sshd.log"
            with open(log, "ab") as out:
                proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.05)
            if proc.poll() is None:
                break
            last = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
            last = last[0]
            proc = None
        if proc is None:
            raise RigError(f"sshd did not start: {last}")
        yield Server(port, user, client_key, proc, log)
    finally:
        _stop(proc)


@dataclass
class Share:
    served: Path  # the folder on the server's side
    mount: Path  # where it is mounted over sshfs
    proc: subprocess.Popen  # sshfs, in the foreground (-f): killing it drops the share
    dropped: bool = False

    def drop(self) -> None:
        """The network goes away: the sshfs process dies at once, as on a cut connection."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.dropped = True

    def close(self) -> None:
        if self.proc.poll() is None:
            subprocess.run(["fusermount3", "-u", str(self.mount)], capture_output=True,
                           timeout=30)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        # A killed sshfs leaves its mount behind, answering ENOTCONN: detach it lazily.
        if in_mount_table(self.mount):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mount)], capture_output=True,
                           timeout=30)
            if in_mount_table(self.mount):
                subprocess.run(["umount", "-l", str(self.mount)], capture_output=True,
                               timeout=30)


@contextmanager
def sshfs_mount(server: Server, served: Path, mount: Path,
                options: tuple[str, ...] = ()) -> Iterator[Share]:
    """`served` (made here) mounted at `mount` over sshfs from `server`. `options` are extra
    sshfs -o options (e.g. "direct_io")."""
    served.mkdir(parents=True, exist_ok=True)
    mount.mkdir(parents=True, exist_ok=True)
    opts = ",".join([f"IdentityFile={server.client_key}", "IdentitiesOnly=yes",
                     "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null",
                     "BatchMode=yes", "LogLevel=ERROR", *options])
    cmd = ["sshfs", "-f", "-F", "/dev/null", f"{server.user}@127.0.0.1:{served}", str(mount),
           "-p", str(server.port), "-o", opts]
    err = mount.parent / f"{mount.name}.sshfs.log"
    with open(err, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    share = Share(served, mount, proc)
    try:
        wait_mounted(mount, proc, err, "sshfs", RigError)
        yield share
    finally:
        share.close()
