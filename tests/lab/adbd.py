"""A stand-in Android device for the tests: a small adbd speaking the ADB protocol over loopback TCP, so the
phone tests run Debian's real `adb` client and server (`adb connect 127.0.0.1:PORT`) against it.

What it speaks, as AOSP's packages/modules/adb documents it (protocol.txt, SYNC.TXT, shell_protocol.h):
- the connection: CNXN (banner `device::ro.product.model=...;features=...`), or AUTH tokens that no key
  answers (`unauthorized`), or silence after the TCP accept (`offline`);
- streams: OPEN / OKAY / WRTE / CLSE, one WRTE in flight per stream (the host's OKAY acknowledges it);
- services: `shell[,v2][,raw]:CMD` (with shell_v2: stdout, stderr and the exit status in shell-protocol
  packets; without: one output stream, no status), `exec:CMD`, and `sync:` (STAT, STA2, LST2, LIST, LIS2,
  SEND with DATA/DONE and the mode, RECV, QUIT), which is what `adb push` (files and folders) and
  `adb pull` use.

The phone: commands run under `mksh` as /system/bin/sh with toybox's tools in /system/bin, in a tree whose
paths are a phone's (/data/local/tmp, /system/bin, /system/build.prop for getprop). Mechanism: adbd runs
in a private mount namespace (`unshare --mount --propagation private`) and chroots into a tmpfs holding
bind mounts of this machine's top-level folders plus the phone's own /data and /system (host folders the
test reads and writes). Why: it needs no copy of mksh, toybox or their libraries, the kernel's /proc stays
(ps, kill, /proc/PID/stat: what melt's spawning scripts read to end a process tree), host paths a test
symlinks into the phone (llama.cpp's binaries, a model) still resolve, and every mount lives only as
long as the namespace: when adbd and its children are gone, nothing is left to unmount on this machine.
The phone's sensors stay where the profile's sensors.root names them (a recorded tree), since /proc must be
the kernel's. Every process of the phone shares adbd's mount namespace, which is how processes() finds
them and how stop() ends whatever a test left running.

Features (file `features`, else FEATURES): what the banner offers; without shell_v2 the host falls back to
`shell:CMD`, as with a phone before Android 7.0.
Modes (file `mode` in the state folder, re-read on SIGHUP, which also drops every host connection):
`device`, `offline` (TCP accepted, CNXN never answered), `unauthorized` (AUTH tokens, no key accepted).
Extra variables of the phone's shell (as a user's profile would set them): `env.json` in the state folder,
read at every command.

Run as: unshare --mount --propagation private python adbd.py STATE PHONE (root); start() does it.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# -- the ADB transport protocol (protocol.txt) --------------------------------------------------------
A_SYNC, A_CNXN, A_OPEN, A_OKAY = 0x434E5953, 0x4E584E43, 0x4E45504F, 0x59414B4F
A_CLSE, A_WRTE, A_AUTH = 0x45534C43, 0x45545257, 0x48545541
A_VERSION = 0x01000001  # skips the payload checksum; we still send a right one
MAX_PAYLOAD = 256 * 1024
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
HEADER = struct.Struct("<6I")
FEATURES = "shell_v2,cmd,stat_v2,ls_v2,fixed_push_mkdir"
PHONE_DIRS = ("data", "system")  # the phone's own folders; every other top-level folder is this machine's
PHONE_PATH = "/product/bin:/apex/com.android.runtime/bin:/system_ext/bin:/system/bin:/system/xbin:/vendor/bin"
PHONE_ENV = {  # what an adb shell on Android starts with (no tty: no TERM)
    "PATH": PHONE_PATH,
    "ANDROID_DATA": "/data",
    "ANDROID_ROOT": "/system",
    "EXTERNAL_STORAGE": "/sdcard",
    "TMPDIR": "/data/local/tmp",
    "HOME": "/",
    "SHELL": "/system/bin/sh",
    "USER": "shell",
    "LOGNAME": "shell",
    "HOSTNAME": "lab-phone",
}

# -- shell protocol v2 (shell_protocol.h): 1 byte id, 4 bytes little-endian length, data ----------------
SH_STDIN, SH_STDOUT, SH_STDERR, SH_EXIT, SH_CLOSE_STDIN = 0, 1, 2, 3, 4


def _id(text: str) -> int:
    return struct.unpack("<I", text.encode())[0]


# -- the sync protocol (SYNC.TXT, file_sync_protocol.h) ------------------------------------------------
S_STAT, S_STA2, S_LST2, S_LIST, S_LIS2 = map(_id, ("STAT", "STA2", "LST2", "LIST", "LIS2"))
S_DENT, S_DNT2, S_SEND, S_RECV, S_DONE = map(_id, ("DENT", "DNT2", "SEND", "RECV", "DONE"))
S_DATA, S_OKAY, S_FAIL, S_QUIT = map(_id, ("DATA", "OKAY", "FAIL", "QUIT"))
SYNC_DATA_MAX = 64 * 1024
STAT_V2 = struct.Struct("<IIQQIIIIQqqq")  # id, error, dev, ino, mode, nlink, uid, gid, size, atime, mtime, ctime


class Closed(Exception):
    """The host closed the stream or the connection."""


class Stream:
    """One OPENed service: bytes from the host arrive in a queue; send() keeps one WRTE in flight."""

    def __init__(self, conn: Connection, local: int, remote: int):
        self.conn, self.local, self.remote = conn, local, remote
        self.incoming: queue.Queue[bytes | None] = queue.Queue()
        self.buffer = b""
        self.acked = threading.Event()
        self.acked.set()
        self.closed = False

    def send(self, data: bytes) -> None:
        for at in range(0, len(data), self.conn.max_payload):
            while not self.acked.wait(0.5):
                if self.closed:
                    raise Closed
            if self.closed:
                raise Closed
            self.acked.clear()
            self.conn.send(A_WRTE, self.local, self.remote, data[at : at + self.conn.max_payload])

    def read_some(self) -> bytes:
        """What the host sent next (b"" at its close)."""
        if self.buffer:
            data, self.buffer = self.buffer, b""
            return data
        return self.incoming.get() or b""

    def read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.incoming.get()
            if not chunk:
                raise Closed
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.acked.set()
            self.conn.send(A_CLSE, self.local, self.remote)
            self.conn.streams.pop(self.local, None)


class Connection:
    """One host connection (the adb server's transport to this device)."""

    def __init__(self, server: Adbd, sock: socket.socket):
        self.server, self.sock = server, sock
        self.lock = threading.Lock()
        self.streams: dict[int, Stream] = {}
        self.max_payload = 4096
        self.online = False

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        header = HEADER.pack(command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF)
        with self.lock:
            try:
                self.sock.sendall(header + data)
            except OSError:
                pass  # the host is gone: the reader sees it

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise Closed
            data += chunk
        return data

    def serve(self) -> None:
        try:
            while True:
                command, arg0, arg1, length, _check, magic = HEADER.unpack(self._recv_exact(HEADER.size))
                if magic != command ^ 0xFFFFFFFF:
                    return  # not adb: drop the connection as adbd does
                self.handle(command, arg0, arg1, self._recv_exact(length) if length else b"")
        except (Closed, OSError):
            pass
        finally:
            for s in list(self.streams.values()):
                s.closed = True
                s.acked.set()
                s.incoming.put(None)
            self.server.forget(self)
            try:
                self.sock.close()
            except OSError:
                pass

    def handle(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        mode = self.server.mode
        if mode == "offline":
            return  # the TCP link is up, adbd never answers: the host shows the device offline
        if command == A_CNXN:
            self.max_payload = max(4096, min(arg1, MAX_PAYLOAD))
            if mode == "unauthorized":
                self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
            else:
                self.online = True
                self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.server.banner())
        elif command == A_AUTH:
            if arg0 == AUTH_SIGNATURE:  # no key is ours: ask again, until the host offers its public key
                self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
            # AUTH_RSAPUBLICKEY: the phone would ask its user; nobody answers, the host stays unauthorized
        elif not self.online:
            return
        elif command == A_OPEN:
            service = data.rstrip(b"\0").decode(errors="replace")
            local = self.server.next_id()
            stream = Stream(self, local, arg0)
            target = self.server.service(service)
            if target is None:
                self.send(A_CLSE, 0, arg0)
                return
            self.streams[local] = stream
            self.send(A_OKAY, local, arg0)
            threading.Thread(target=self._run_service, args=(target, stream), daemon=True).start()
        elif command == A_OKAY:
            stream = self.streams.get(arg1)
            if stream:
                stream.acked.set()
        elif command == A_WRTE:
            stream = self.streams.get(arg1)
            if stream:
                stream.incoming.put(data)
                self.send(A_OKAY, arg1, arg0)
        elif command == A_CLSE:
            stream = self.streams.pop(arg1, None)
            if stream:
                stream.closed = True
                stream.acked.set()
                stream.incoming.put(None)

    def _run_service(self, target, stream: Stream) -> None:
        try:
            target(stream)
        except Closed:
            pass
        except Exception as e:  # noqa: BLE001 - a stand-in's bug must show in its log, not hang the host
            print(f"adbd: {target.__name__}: {e!r}", file=sys.stderr, flush=True)
        finally:
            stream.close()


class Adbd:
    def __init__(self, state: Path, sock: socket.socket):
        self.state, self.sock = state, sock
        self.connections: set[Connection] = set()
        self.ids = 0
        self.ids_lock = threading.Lock()
        self.mode = self.read_mode()

    def read_mode(self) -> str:
        try:
            return (self.state / "mode").read_text().strip() or "device"
        except OSError:
            return "device"

    def next_id(self) -> int:
        with self.ids_lock:
            self.ids += 1
            return self.ids

    def banner(self) -> bytes:
        props = read_props(Path("/system/build.prop"))
        keys = ("ro.product.name", "ro.product.model", "ro.product.device")
        try:  # an older adbd's features, where a test asks for them
            features = (self.state / "features").read_text().strip()
        except OSError:
            features = FEATURES
        return ("device::" + "".join(f"{k}={props.get(k, '')};" for k in keys) + f"features={features}").encode()

    def forget(self, conn: Connection) -> None:
        self.connections.discard(conn)

    def drop_all(self) -> None:
        for conn in list(self.connections):
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def serve(self) -> None:
        while True:
            try:
                sock, _ = self.sock.accept()
            except InterruptedError:
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small packets (exit, CLSE) at once
            conn = Connection(self, sock)
            self.connections.add(conn)
            threading.Thread(target=conn.serve, daemon=True).start()

    def service(self, name: str):
        """The function that serves an OPENed service name, or None (refused with CLSE, as adbd does)."""
        if name.startswith("shell"):
            head, sep, command = name.partition(":")
            if not sep or (head != "shell" and not head.startswith("shell,")):
                return None
            args = head.split(",")[1:]
            v2 = "v2" in args

            def shell(stream: Stream) -> None:
                run_command(stream, command, v2)

            return shell if command else None  # an interactive shell needs a tty: not played
        if name.startswith("exec:"):

            def execute(stream: Stream) -> None:
                run_command(stream, name[5:], False)

            return execute
        if name == "sync:":
            return sync_service
        return None


# -- shell and exec ------------------------------------------------------------------------------------
def phone_env() -> dict:
    env = dict(PHONE_ENV)
    try:
        env.update(json.loads(Path(os.environ["ADBD_STATE"], "env.json").read_text()))
    except (OSError, ValueError):
        pass
    return env


def _packet(kind: int, data: bytes) -> bytes:
    return struct.pack("<BI", kind, len(data)) + data


def run_command(stream: Stream, command: str, v2: bool) -> None:
    """CMD under /system/bin/sh (mksh) in a session of its own, as adbd's shell service starts it. With v2:
    stdout and stderr apart and the exit status (0x80|signal when a signal ended it) as a packet; without:
    one stream of output and no status. The host's close sends SIGHUP to the shell, as adbd does."""
    proc = subprocess.Popen(
        ["/system/bin/sh", "-c", command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if v2 else subprocess.STDOUT,
        cwd="/",
        env=phone_env(),
        start_new_session=True,
    )
    send_lock = threading.Lock()

    def pump(pipe, kind: int) -> None:
        while True:
            data = os.read(pipe.fileno(), 65536)
            if not data:
                return
            with send_lock:
                try:
                    stream.send(_packet(kind, data) if v2 else data)
                except Closed:
                    return

    pumps = [threading.Thread(target=pump, args=(proc.stdout, SH_STDOUT), daemon=True)]
    if v2:
        pumps.append(threading.Thread(target=pump, args=(proc.stderr, SH_STDERR), daemon=True))
    for t in pumps:
        t.start()

    def feed() -> None:  # the host's stdin, and its close (v2: a packet; raw: the stream's end)
        pending = b""
        try:
            while True:
                chunk = stream.read_some()
                if not chunk:  # the host closed the stream
                    break
                if not v2:
                    proc.stdin.write(chunk)
                    proc.stdin.flush()
                    continue
                pending += chunk
                while len(pending) >= 5:
                    kind, length = struct.unpack("<BI", pending[:5])
                    if len(pending) < 5 + length:
                        break
                    body, pending = pending[5 : 5 + length], pending[5 + length :]
                    if kind == SH_STDIN:
                        proc.stdin.write(body)
                        proc.stdin.flush()
                    elif kind == SH_CLOSE_STDIN:
                        proc.stdin.close()
        except (OSError, ValueError):
            pass
        if stream.closed and proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGHUP)
            except ProcessLookupError:
                pass

    threading.Thread(target=feed, daemon=True).start()
    for t in pumps:
        t.join()
    rc = proc.wait()
    if v2 and not stream.closed:
        code = (0x80 | -rc) if rc < 0 else rc
        stream.send(_packet(SH_EXIT, bytes([code & 0xFF])))


# -- sync ------------------------------------------------------------------------------------------------
def _fail(stream: Stream, message: str) -> None:
    data = message.encode()
    stream.send(struct.pack("<II", S_FAIL, len(data)) + data)


def _stat_v2(kind: int, path: str, follow: bool) -> bytes:
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError as e:
        return STAT_V2.pack(kind, e.errno, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return STAT_V2.pack(
        kind, 0, st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_size,
        int(st.st_atime), int(st.st_mtime), int(st.st_ctime),
    )  # fmt: skip


def _list(stream: Stream, path: str, v2: bool) -> None:
    try:
        names = sorted(os.listdir(path))
    except OSError:
        names = []
    for name in [".", "..", *names]:
        full = os.path.join(path, name)
        raw = name.encode()
        if v2:
            entry = _stat_v2(S_DNT2, full, False)
            if struct.unpack_from("<I", entry, 4)[0]:
                continue
            stream.send(entry + struct.pack("<I", len(raw)) + raw)
        else:
            try:
                st = os.lstat(full)
            except OSError:
                continue
            stream.send(
                struct.pack("<5I", S_DENT, st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime), len(raw)) + raw
            )
    stream.send(
        STAT_V2.pack(S_DONE, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) + b"\0" * 4
        if v2
        else struct.pack("<5I", S_DONE, 0, 0, 0, 0)
    )


def _receive_file(stream: Stream, path: str, mode: int) -> None:
    """SEND: DATA chunks until DONE(mtime); the parent folders are made (feature fixed_push_mkdir)."""
    error = None
    target = None
    if stat.S_ISLNK(mode):
        link = b""
    else:
        try:
            os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
            if os.path.isdir(path):
                raise IsADirectoryError(21, "Is a directory")
            target = open(path, "wb")  # noqa: SIM115 - written chunk by chunk as DATA arrives
        except OSError as e:
            error = f"couldn't create file: {e.strerror}"
    while True:
        kind, arg = struct.unpack("<II", stream.read_exact(8))  # DATA: its size; DONE: the file's mtime
        if kind == S_DATA:
            chunk = stream.read_exact(arg)
            if stat.S_ISLNK(mode):
                link += chunk
            elif target is not None and error is None:
                try:
                    target.write(chunk)
                except OSError as e:
                    error = f"write failed: {e.strerror}"
        elif kind == S_DONE:
            break
        else:
            error = error or "invalid data message"
            break
    try:
        if stat.S_ISLNK(mode) and error is None:
            if os.path.lexists(path):
                os.unlink(path)
            os.symlink(link.decode(), path)
        elif target is not None:
            target.close()
            if error is None:
                os.chmod(path, stat.S_IMODE(mode) or 0o644)
                os.utime(path, (arg, arg))
    except OSError as e:
        error = error or f"couldn't finish file: {e.strerror}"
    if error:
        _fail(stream, error)
    else:
        stream.send(struct.pack("<II", S_OKAY, 0))


def _send_file(stream: Stream, path: str) -> None:
    """RECV: the file in DATA chunks, then DONE; FAIL with the reason where it cannot be read."""
    try:
        with open(path, "rb") as f:
            while chunk := f.read(SYNC_DATA_MAX):
                stream.send(struct.pack("<II", S_DATA, len(chunk)) + chunk)
    except OSError as e:
        _fail(stream, e.strerror or str(e))
        return
    stream.send(struct.pack("<II", S_DONE, 0))


def sync_service(stream: Stream) -> None:
    while True:
        kind, length = struct.unpack("<II", stream.read_exact(8))
        if kind == S_QUIT:
            return
        path = stream.read_exact(length).decode(errors="surrogateescape")
        if kind == S_STAT:
            try:
                st = os.lstat(path)
                stream.send(struct.pack("<4I", S_STAT, st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime)))
            except OSError:
                stream.send(struct.pack("<4I", S_STAT, 0, 0, 0))
        elif kind in (S_STA2, S_LST2):
            stream.send(_stat_v2(kind, path, kind == S_STA2))
        elif kind in (S_LIST, S_LIS2):
            _list(stream, path, kind == S_LIS2)
        elif kind == S_SEND:
            name, _, mode = path.rpartition(",")
            _receive_file(stream, name, int(mode) if mode.isdigit() else 0o644)
        elif kind == S_RECV:
            _send_file(stream, path)
        else:
            _fail(stream, f"unknown sync request {struct.pack('<I', kind)!r}")
            return


def read_props(path: Path) -> dict[str, str]:
    props = {}
    try:
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                props[key.strip()] = value
    except OSError:
        pass
    return props


# -- the phone's tree and its namespace ----------------------------------------------------------------
GETPROP = """#!/system/bin/sh
# getprop [NAME]: Android's property service, answered from /system/build.prop (KEY=VALUE lines)
if [ $# -eq 0 ]; then
  while IFS='=' read -r k v; do
    case "$k" in ''|'#'*) ;; *) printf '[%s]: [%s]\\n' "$k" "$v";; esac
  done < /system/build.prop
  exit 0
fi
while IFS='=' read -r k v; do [ "$k" = "$1" ] && { printf '%s\\n' "$v"; exit 0; }; done < /system/build.prop
printf '\\n'
"""


def make_phone(home: Path, props: dict[str, str]) -> None:
    """The phone's own folders under home (on this machine): data/local/tmp, and system/bin with mksh as sh,
    a link per toybox tool, getprop; system/build.prop with props."""
    (home / "data" / "local" / "tmp").mkdir(parents=True, exist_ok=True)
    bin_dir = home / "system" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    toybox = subprocess.run(["toybox"], capture_output=True, text=True, check=True).stdout.split()
    for tool in toybox:
        if tool not in ("sh", "toysh", "getprop") and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to("/usr/bin/toybox" if Path("/usr/bin/toybox").exists() else "/bin/toybox")
    for name in ("sh", "mksh"):
        if not (bin_dir / name).exists():
            (bin_dir / name).symlink_to(os.path.realpath("/bin/mksh"))
    (bin_dir / "getprop").write_text(GETPROP)
    (bin_dir / "getprop").chmod(0o755)
    (home / "system" / "build.prop").write_text("".join(f"{k}={v}\n" for k, v in props.items()))


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def enter_phone(state: Path, home: Path) -> None:
    """In this (private) mount namespace: a tmpfs root with this machine's top-level folders bound in and
    the phone's /data and /system from home; then chroot into it."""
    root = state / "root"
    root.mkdir(exist_ok=True)
    _mount("-t", "tmpfs", "-o", "mode=755", "lab-phone", str(root))
    _mount("--make-unbindable", str(root))  # the recursive binds below leave this root out of their copies
    for entry in sorted(os.scandir("/"), key=lambda e: e.name):
        target = root / entry.name
        if entry.name in PHONE_DIRS:
            continue
        if entry.is_symlink():
            target.symlink_to(os.readlink(entry.path))
        elif entry.is_dir(follow_symlinks=False):
            target.mkdir()
            _mount("--rbind", entry.path, str(target))
    for name in PHONE_DIRS:
        (root / name).mkdir()
        _mount("--bind", str(home / name), str(root / name))
    os.chroot(root)
    os.chdir("/")


def main(argv: list[str]) -> int:
    state, home = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    os.environ["ADBD_STATE"] = str(state)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    enter_phone(state, home)
    server = Adbd(state, sock)

    def on_hup(*_):
        server.mode = server.read_mode()
        server.drop_all()

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port_file = state / "port"
    (state / "port.part").write_text(str(sock.getsockname()[1]))
    os.replace(state / "port.part", port_file)
    try:
        server.serve()
    finally:
        end_phone_processes()
    return 0


# -- this machine's side: start, control, stop ------------------------------------------------------------
def namespace_of(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def phone_processes(namespace: str, leave_out: int) -> dict[int, str]:
    """{pid: command line} of every live process in the phone's mount namespace but leave_out (adbd)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == leave_out:
            continue
        if namespace_of(entry) != namespace:
            continue
        try:
            status = Path(f"/proc/{entry}/stat").read_text()
            if status.rsplit(")", 1)[1].split()[0] == "Z":
                continue
            found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, IndexError):
            continue
    return found


def end_phone_processes() -> None:
    """SIGKILL every process of the phone but adbd itself (its namespace is adbd's)."""
    me = os.getpid()
    for pid in phone_processes(namespace_of(me) or "", me):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class Phone:
    """A running stand-in phone: home is its /data and /system on this machine; serial is what
    `adb connect` made of it."""

    state: Path
    home: Path
    proc: subprocess.Popen
    port: int
    namespace: str

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def path(self, device_path: str) -> Path:
        """Where a phone path under /data or /system lies on this machine."""
        return self.home / device_path.lstrip("/")

    def set_mode(self, mode: str) -> None:
        (self.state / "mode").write_text(mode)
        self.proc.send_signal(signal.SIGHUP)

    def set_env(self, env: dict[str, str]) -> None:
        """Variables the phone's shell has from now on (beside Android's own)."""
        (self.state / "env.json").write_text(json.dumps(env))

    def processes(self) -> dict[int, str]:
        """{pid: command line} of what runs on the phone now (adbd left out)."""
        return phone_processes(self.namespace, self.proc.pid)

    def stop(self) -> None:
        """End adbd; it ends every process of the phone first, so the namespace and its mounts go with it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pid in phone_processes(self.namespace, -1):  # only where adbd died without its clean-up
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start(
    state: Path,
    home: Path,
    props: dict[str, str],
    mode: str = "device",
    features: str | None = None,
    timeout_s: float = 30,
) -> Phone:
    """Make the phone's folders under home and start adbd for it (root: a mount namespace of its own).
    features: what its CNXN banner offers (default FEATURES)."""
    state.mkdir(parents=True, exist_ok=True)
    make_phone(home, props)
    (state / "mode").write_text(mode)
    if features is not None:
        (state / "features").write_text(features)
    log = open(state / "adbd.log", "ab")  # noqa: SIM115 - the child holds it
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", sys.executable, __file__, str(state), str(home)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        env={"PATH": os.environ["PATH"]},
    )  # fmt: skip: the phone's shell gets PHONE_ENV and env.json, nothing of the test's environment
    log.close()
    deadline = time.monotonic() + timeout_s
    while not (state / "port").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"adbd did not start: {(state / 'adbd.log').read_text()[-2000:]}")
        time.sleep(0.05)
    namespace = namespace_of(proc.pid)
    if namespace is None or namespace == namespace_of("self"):
        proc.kill()
        raise RuntimeError("adbd is not in a mount namespace of its own")
    return Phone(state, home, proc, int((state / "port").read_text()), namespace)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
