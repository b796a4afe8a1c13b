"""Joining or starting the Ray cluster of a search, with Ray's files and settings kept in the run directory.

Decisions (Ray 2.60):
- A local cluster (no address) listens on the loopback interface only. On Linux Ray binds its servers to
  every interface unless the node's address is 127.0.0.1, and it only keeps 127.0.0.1 when
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is in the environment *when ray is first imported* (it is read
  into a module constant). So the variable is set before the first ``import ray`` of the process; when
  ray was imported earlier, the cluster still starts and a message says that it listens on every
  interface. The dashboard stays off unless asked for.
- Ray's temporary folder (logs, sockets, spilled objects) is ``<run>/ray/tmp``; Tune's results are in
  ``<run>/ray/tune``. Unix socket paths are limited to 107 bytes, so when the run directory is too deep a
  short symbolic link under the system's temporary folder points at ``<run>/ray/tmp`` (the files stay in
  the run directory) and is removed at the end.
- No network calls and nothing in the home directory: usage statistics off
  (``RAY_USAGE_STATS_ENABLED=0``), and on a local cluster token authentication off
  (``RAY_AUTH_MODE=disabled``: Ray 2.60 otherwise writes a token to ``~/.ray``). Variables the user
  has set are respected. Worker log lines reach this terminal, deduplicated as Ray does by default
  (``RAY_DEDUP_LOGS=0`` shows every line).
- Tune prints nothing (``verbose=0`` and ``RAY_AIR_NEW_OUTPUT=0``): the progress bar is the search's.
  Ctrl-C raises KeyboardInterrupt as with engine optuna
  (``TUNE_DISABLE_SIGINT_HANDLER=1``) instead of Tune's own graceful stop.
- Environment variables are set for the duration of the search and restored afterwards; processes
  started by Ray inherit them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.core.errors import UsageError

if TYPE_CHECKING:
    from nas.core.run_dir import RunDir
    from nas.core.sections import SearchConfig

__all__ = ["RayCluster", "ray_cluster", "ray_dir"]

# "/session_2026-01-01_00-00-00_000000_<pid up to 7 digits>/sockets/plasma_store": what Ray appends to its
# temporary folder for its longest socket path; the kernel allows 107 bytes.
_SOCKET_SUFFIX = len("/session_2026-01-01_00-00-00_000000_1234567/sockets/plasma_store")
_SOCKET_MAX = 107

_COMMON_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    "RAY_AIR_NEW_OUTPUT": "0",  # with verbose=0: no experiment table, no TensorBoard hint
}
_LOCAL_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keeps a node address of 127.0.0.1 (see the module docstring)
}


def ray_dir(run: RunDir, search: SearchConfig) -> Path:
    """Where a search keeps Ray's files (``tmp/`` for Ray, ``tune/`` for Tune): ``search.ray_storage_path`` or ``<run>/ray``."""
    # Absolute: Ray refuses a relative temporary folder, and Tune reads a relative storage path as a URI.
    if search.ray_storage_path is None:
        return (run.root / "ray").resolve()
    return Path(search.ray_storage_path).expanduser().resolve()


@dataclass(frozen=True)
class RayCluster:
    """What the search needs to know about the cluster it runs on."""

    address: str | None  # the existing cluster joined, or None for a local one started here
    cpus: float
    gpus: float
    nodes: int
    node_ip: str  # this driver's node address (127.0.0.1 for a local cluster on loopback only)
    temp_dir: Path | None  # Ray's temporary folder of a local cluster (None: the cluster's own)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set the variables the user has not set, for the ``with`` block; restore them afterwards."""
    added = [key for key in values if key not in os.environ]
    for key in added:
        os.environ[key] = values[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@contextlib.contextmanager
def _short_temp_dir(target: Path, say: Callable[[str], None]) -> Iterator[Path]:
    """``target``, or a short symbolic link to it when Ray's socket paths would be too long."""
    target.mkdir(parents=True, exist_ok=True)
    if len(str(target)) + _SOCKET_SUFFIX <= _SOCKET_MAX:
        yield target
        return
    digest = hashlib.sha256(str(target).encode()).hexdigest()[:10]
    link = Path(tempfile.gettempdir()) / f"nas-ray-{digest}"
    if len(str(link)) + _SOCKET_SUFFIX > _SOCKET_MAX:
        raise UsageError(
            f"the temporary folder {tempfile.gettempdir()!r} is too deep for Ray's sockets; set TMPDIR to a short path such as /tmp"
        )
    if link.is_symlink() and Path(os.readlink(link)) != target:
        link.unlink()
    if not link.is_symlink():
        if link.exists():
            raise UsageError(f"{link} exists and is not a link to {target}; remove it")
        link.symlink_to(target, target_is_directory=True)
    say(f"Ray's temporary folder {target} is too deep for its socket paths; using the link {link} to it")
    try:
        yield link
    finally:
        with contextlib.suppress(OSError):
            link.unlink()


@contextlib.contextmanager
def ray_cluster(
    root: Path,
    *,
    address: str | None,
    cpus: int,
    dashboard: bool = False,
    say: Callable[[str], None] = print,
) -> Iterator[RayCluster]:
    """Join the cluster at ``address``, or start a local one with ``cpus`` CPUs; disconnect or stop it at the end.

    ``root``: the search's Ray folder (:func:`ray_dir`); a local cluster's temporary folder is ``root/tmp``.

    A Ray already initialised by this process is refused: its settings (temporary folder, interfaces)
    would not be the run's.
    """
    fresh_import = "ray" not in sys.modules
    env = dict(_COMMON_ENV) if address else {**_COMMON_ENV, **_LOCAL_ENV}
    with _environment(env):
        import ray

        if ray.is_initialized():
            raise UsageError(
                "Ray is already initialised in this process; call ray.shutdown() before a search with engine ray"
            )
        if address:
            _check_reachable(address)
            try:
                ray.init(address=address, configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as err:
                raise UsageError(f"cannot join the Ray cluster at {address!r}: {err}") from None
            try:
                yield _describe(ray, address, None)
            finally:
                ray.shutdown()  # disconnects; the cluster is not ours to stop
            return
        with _short_temp_dir(root / "tmp", say) as temp_dir:
            ray.init(
                num_cpus=cpus,
                include_dashboard=dashboard,
                _temp_dir=str(temp_dir),
                _node_ip_address="127.0.0.1",
                configure_logging=False,
            )
            try:
                cluster = _describe(ray, None, Path(temp_dir))
                if cluster.node_ip != "127.0.0.1":
                    why = (
                        "ray was imported before the search started"
                        if not fresh_import
                        else "Ray chose another address"
                    )
                    say(f"the local Ray cluster listens on {cluster.node_ip}, not only on 127.0.0.1 ({why})")
                yield cluster
            finally:
                ray.shutdown()  # stops the local cluster


# HTTP/2's connection preface and an empty SETTINGS frame: what a gRPC client sends first.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS = 0x4


def _check_reachable(address: str, timeout: float = 4.0) -> None:
    """Fail fast on an address nobody listens at, or where something other than Ray answers.

    ``ray.init`` would retry for many minutes in both cases. A Ray head's address is its GCS, a gRPC server:
    it answers HTTP/2's connection preface with a SETTINGS frame. Anything else (an HTTP/1 server, a
    database, a silent socket) answers otherwise, closes, or says nothing within ``timeout``.
    """
    if address.startswith("ray://"):
        raise UsageError(
            f"address {address!r} is a Ray Client address; engine ray runs its driver in this process and needs "
            "the cluster's own address HOST:PORT (what 'ray start --head' prints, port 6379 by default)"
        )
    if address == "auto":
        return  # the cluster started on this machine by 'ray start'; Ray finds it
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"Ray address {address!r} is not HOST:PORT (for example 10.0.0.1:6379), nor 'auto'")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(_H2_PREFACE)
            header = _read_exactly(conn, 9)
    except OSError as err:
        if isinstance(err, TimeoutError) or "timed out" in str(err):
            header = b""
        else:
            raise UsageError(
                f"cannot reach the Ray cluster at {address}: {err}; is 'ray start --head' running there?"
            ) from None
    if len(header) < 9 or header[3] != _SETTINGS:
        raise UsageError(
            f"something answers at {address}, but it is not a Ray cluster's head (no gRPC answer within {timeout:g} s); "
            "give the address 'ray start --head' prints (port 6379 by default)"
        )


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _describe(ray: Any, address: str | None, temp_dir: Path | None) -> RayCluster:
    resources = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return RayCluster(
        address=address,
        cpus=float(resources.get("CPU", 0.0)),
        gpus=float(resources.get("GPU", 0.0)),
        nodes=len(nodes),
        node_ip=ray.util.get_node_ip_address(),
        temp_dir=temp_dir,
    )
