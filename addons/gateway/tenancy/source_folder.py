"""The named keys of a gateway without a shared database: `<state_dir>/keys.sqlite3`, from a thread (`FolderKeys`),
and the gateway told of each `qwen-keys` change rather than left to find it at its next look (`told`).

Told: each running gateway listens on a Unix socket of its own, `<state_dir>/gateways/<pid>.sock` (the folder
0700, the socket 0600: only the folder's owner reaches it). `qwen-keys`, once its change is committed, connects
to each socket and writes `keys`; the gateway reads the keys file, applies it, and answers `applied` — so
`qwen-keys revoke` returns when every gateway of the folder refuses the key (`tell_gateways`). A socket no process
answers is a dead gateway's: qwen-keys removes it. A path longer than a socket's address (108 bytes) is reached
through /proc/self/fd."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from .ring import KeyRecord
from .schema import MOVED_TO, read_note
from .store import FILENAME, KeyStore

log = logging.getLogger("qwen")

GATEWAYS = "gateways"  # the sockets' folder, in the state folder
ALIVE = ".alive"  # beside each socket, `<pid>.alive`: locked by its gateway for as long as it runs
ASK, APPLIED = b"keys\n", b"applied\n"
TELL_S = 10.0  # how long qwen-keys waits for every gateway of the folder to say it applied a change
READ_S = 5.0  # how long a gateway waits for the word of a client that connected
Read = tuple[tuple[KeyRecord, ...] | None, dict, str]  # the keys (None: unchanged), their spend, where they moved


class FolderKeys:
    """The keys file, opened once it exists: spend written, everything read again when another process
    (qwen-keys, another gateway on the same folder) changed it."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILENAME
        self.store: KeyStore | None = None
        self.version: int | None = None

    def io(self, pending: dict, today: str) -> Read:
        """In a thread. The spend of a key deleted meanwhile is not written (its name may be used again, from
        zero)."""
        if self.store is None:
            if not self.path.exists():
                return None, {}, ""
            self.store = KeyStore.local(self.path.parent)
        version = self.store.data_version()  # our own writes leave it as it is
        keys = self.store.keys() if version != self.version else None
        if keys is not None:
            names = {r.name for r in keys}
            pending = {k: d for k, d in pending.items() if k[0] in names}
        if pending:
            self.store.write_spend(pending)
        if keys is None:
            return None, {}, ""
        self.version = version
        moved = read_note(self.store.conn, MOVED_TO) if not keys else None
        return keys, self.store.spend(today=today), moved[0] if moved else ""

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store, self.version = None, None


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """`path` as a socket address: itself, or through an open descriptor of its folder when it is too long."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


async def told(state_dir: Path, apply: Callable[[], Awaitable[None]]) -> None:
    """For ever (a task of its own): this gateway's socket, each `keys` answered once `apply()` read and applied
    the keys file. A folder it cannot write: said once, and the gateway finds changes at its next look."""
    folder = state_dir / GATEWAYS
    path = folder / f"{os.getpid()}.sock"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if await asyncio.wait_for(reader.readline(), READ_S) == ASK:
                await apply()
                writer.write(APPLIED)
                await writer.drain()
        except Exception as e:  # a client that left, a keys file that could not be read: no word
            log.debug("qwen: a qwen-keys notice: %s", type(e).__name__)
        finally:
            writer.close()

    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a dead gateway's of the same pid
        with _address(path) as address:
            server = await asyncio.start_unix_server(answer, path=address)
        os.chmod(path, 0o600)
    except OSError as e:
        log.warning("qwen: could not listen for qwen-keys' notices in %s: %s (changes are found within a second "
                    "instead)", folder, e.strerror or type(e).__name__)
        return
    alive = _alive(folder)
    try:
        await asyncio.Event().wait()
    finally:
        server.close()
        with contextlib.suppress(OSError):
            path.unlink()
        if alive is not None:
            with contextlib.suppress(OSError):
                (folder / f"{os.getpid()}{ALIVE}").unlink()
            os.close(alive)


def _alive(folder: Path) -> int | None:
    """This gateway's mark that it runs: `<pid>.alive`, under an OS lock for as long as the process lives (the kernel
    lets go when it dies). qwen-keys counts a gateway by it even when its socket is gone (a folder cleaned by hand,
    a tmp cleaner): such a gateway cannot be told, so it is named, never left out."""
    try:
        fd = os.open(folder / f"{os.getpid()}{ALIVE}", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _running(mark: Path) -> bool:
    """Whether the gateway of `mark` (`<pid>.alive`) still runs: its process holds the mark's lock. A dead one's
    mark is removed."""
    try:
        fd = os.open(mark, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # (a lock taken here ends with it)
    with contextlib.suppress(OSError):
        mark.unlink()
    return False


def tell_gateways(state_dir: Path, bound: float = TELL_S) -> tuple[int, list[str]]:
    """For qwen-keys, after a change: every gateway running on the folder told at once; (how many applied it, the
    pids of those that did not say so within `bound`, and of those running whose socket is gone: their `.alive`
    mark is locked). Sockets and marks of dead gateways are removed."""
    folder = state_dir / GATEWAYS
    sockets = sorted(folder.glob("*.sock")) if folder.is_dir() else []
    said: list[bool | None] = []
    if sockets:
        with concurrent.futures.ThreadPoolExecutor(len(sockets)) as pool:
            said = list(pool.map(lambda path: _tell(path, bound), sockets))
    deaf = [m.name[:-len(ALIVE)] + " (its socket is gone: it finds the change within a second by itself, but "
            "cannot say so; restart it to be told again)"
            for m in (sorted(folder.glob(f"*{ALIVE}")) if folder.is_dir() else [])
            if not m.with_name(m.name[:-len(ALIVE)] + ".sock").exists() and _running(m)]
    return said.count(True), [path.stem for path, word in zip(sockets, said) if word is False] + deaf


def _tell(path: Path, timeout: float) -> bool | None:
    """True: applied; False: no word within `timeout`; None: nobody listens (the socket removed)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s, _address(path) as address:
            s.settimeout(timeout)
            s.connect(address)
            s.sendall(ASK)
            return s.makefile("rb").readline() == APPLIED
    except (ConnectionRefusedError, FileNotFoundError):  # a dead gateway's
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    except OSError:  # TimeoutError among them
        return False
