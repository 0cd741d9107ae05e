"""Python commands run as forks of one process that has imported TensorFlow, TFX and Beam.

A heavy node of a local run (pipeline/local/node_processes.py) and a task of ``run-package``
(pipeline/kubeflow/package_runner.py) each get a process of their own, so that their memory goes
back to the OS when they end. A new interpreter spends ~8-10 s on 2 vCPU importing
TensorFlow, TFX and Beam before it does any work (docs/BENCHMARKS.md). The server here
imports them once; each command is then a fork of it with its own argv, environment,
working directory and file descriptors, run as ``python -m <module>`` would run it. A fork
is still a process of its own: its memory is returned when it exits.

Fork safety: the server imports modules and runs nothing else (no TensorFlow op, Beam
pipeline or gRPC channel exists in it before a fork); it is single-threaded (a select
loop; SIGCHLD wakes it through a pipe). Set ``FER_FORK_SERVER=0`` to run every command as
a new interpreter instead.

Protocol on a Unix socket pair: a request is a 4-byte length and a JSON body, sent with
the file descriptors the child gets (``socket.send_fds``); the server answers JSON lines
``{"id", "pid"}`` when the child starts and ``{"id", "exit"}`` when it ends.
"""

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback
from typing import Any, Dict, List, Mapping, Optional, Sequence

ENV_SWITCH = "FER_FORK_SERVER"  # "0": no server, a new interpreter per command
# Imported once by the server (third-party only: the project's code may change between
# runs and imports in well under a second).
PRELOAD = (
    "tensorflow",
    "tf_keras",
    "apache_beam",
    "tfx.v1",
    "tfx.orchestration.portable.beam_executor_operator",
    "tfx.orchestration.portable.python_executor_operator",
    "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor",
    "tensorflow_transform",
    "tensorflow_model_analysis",
    "tensorflow_data_validation",
)
MAX_REQUEST_BYTES = 16 << 20  # a task's argv holds its executor input (JSON)
MAX_FDS = 8


class ForkServerError(RuntimeError):
    """The fork server died or refused a request."""


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1") != "0"


# --- the server -------------------------------------------------------------------------


def _run_child(request: Dict[str, Any], fds: Sequence[int]) -> int:
    """In the forked child: become the command and run it; its exit code."""
    import fcntl

    # Out of the way first: a received fd may carry the number of another's target.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 256) for fd in fds]
    for fd in fds:
        os.close(fd)
    for target, index in request["fds"].items():
        os.dup2(high[index], int(target), inheritable=True)
    for fd in high:
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = [request["module"], *request["args"]]
    import runpy

    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        return 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 - as the interpreter would: traceback, exit 1
        traceback.print_exc()
        return 1


def _receive(connection: socket.socket) -> Optional[tuple]:
    """(request, fds), or None when the client has gone."""
    header, fds, _, _ = socket.recv_fds(connection, 4, MAX_FDS)
    if not header:
        return None
    while len(header) < 4:
        more = connection.recv(4 - len(header))
        if not more:
            return None
        header += more
    (size,) = struct.unpack("!I", header)
    if size > MAX_REQUEST_BYTES:
        raise ForkServerError(f"request of {size} bytes (at most {MAX_REQUEST_BYTES})")
    body = b""
    while len(body) < size:
        chunk = connection.recv(min(size - len(body), 1 << 20))
        if not chunk:
            return None
        body += chunk
    return json.loads(body), fds


def serve(connection: socket.socket) -> None:
    """The server's loop: fork a child per request, report starts and exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the client and the children
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: Dict[int, Any] = {}

    def send(message: Dict[str, Any]) -> None:
        connection.sendall(json.dumps(message).encode() + b"\n")

    while True:
        try:
            ready, _, _ = select.select([connection, wake_read], [], [])
        except InterruptedError:
            continue
        if wake_read in ready:
            os.read(wake_read, 4096)
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                send({"id": children.pop(pid), "exit": os.waitstatus_to_exitcode(status)})
        if connection in ready:
            received = _receive(connection)
            if received is None:  # the client ended: so do its commands
                for pid in children:
                    os.kill(pid, signal.SIGKILL)
                return
            request, fds = received
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                for handled in (signal.SIGCHLD, signal.SIGINT):
                    signal.signal(handled, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                connection.close()
                os.close(wake_read)
                os.close(wake_write)
                code = _run_child(request, fds)
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except Exception:  # noqa: BLE001 - a closed stream cannot lose more
                        pass
                os._exit(code & 0xFF if code >= 0 else 1)
            for fd in fds:
                os.close(fd)
            children[pid] = request["id"]
            send({"id": request["id"], "pid": pid})


def main() -> None:
    connection = socket.socket(fileno=int(sys.argv[1]))
    for name in PRELOAD:
        __import__(name)
    serve(connection)


# --- the client -------------------------------------------------------------------------


class ForkServer:
    """The client: starts the server (``python -m pipeline.fork_server``) and runs
    commands through it; thread-safe. ``run`` mirrors ``subprocess.run(...).returncode``."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.pythonpath = os.environ.get("PYTHONPATH", "")
        self._process = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", __name__, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self._socket = ours
        self._lock = threading.Lock()
        self._next_id = 0
        self._waiting: Dict[int, Dict[str, Any]] = {}
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._socket.makefile("r"):
            message = json.loads(line)
            with self._changed:
                self._waiting.setdefault(message["id"], {}).update(message)
                self._changed.notify_all()
        with self._changed:
            self._waiting[-1] = {"gone": True}
            self._changed.notify_all()

    def _await(self, request_id: int, key: str) -> Any:
        with self._changed:
            while key not in self._waiting.get(request_id, {}):
                if -1 in self._waiting:
                    raise ForkServerError(
                        f"the fork server ended (exit {self._process.poll()}); "
                        f"set {ENV_SWITCH}=0 to run without it"
                    )
                self._changed.wait()
            return self._waiting[request_id][key]

    def run(
        self,
        module: str,
        args: Sequence[str],
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        stdout: Optional[int] = None,
        stderr: Optional[int] = None,
        pass_fds: Sequence[int] = (),
    ) -> int:
        """``python -m module *args`` as a fork; its exit code (negative: killed by that
        signal). stdout/stderr: fds (default: this process's); pass_fds keep their numbers."""
        targets = {1: sys.stdout.fileno() if stdout is None else stdout}
        targets[2] = sys.stderr.fileno() if stderr is None else stderr
        targets.update({fd: fd for fd in pass_fds})
        fds: List[int] = list(dict.fromkeys(targets.values()))
        with self._lock:
            request_id, self._next_id = self._next_id, self._next_id + 1
            body = json.dumps(
                {
                    "id": request_id,
                    "module": module,
                    "args": list(args),
                    "env": dict(os.environ if env is None else env),
                    "cwd": cwd or os.getcwd(),
                    "fds": {str(t): fds.index(fd) for t, fd in targets.items()},
                }
            ).encode()
            socket.send_fds(self._socket, [struct.pack("!I", len(body))], fds)
            self._socket.sendall(body)
        pid = self._await(request_id, "pid")
        try:
            return self._await(request_id, "exit")
        except BaseException:  # e.g. Ctrl-C here: the command goes too
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            raise

    def close(self) -> None:
        """Ends the server (and any command still running); one that never ran a command
        (a run whose nodes were all cached) is not waited for."""
        if self._next_id == 0:
            self._process.kill()
        try:
            self._socket.shutdown(socket.SHUT_RDWR)  # the reader's file keeps the fd open
        except OSError:
            pass
        self._socket.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


_server: Optional[ForkServer] = None
_server_lock = threading.Lock()


def _shared() -> ForkServer:
    global _server  # pylint: disable=global-statement
    with _server_lock:
        if _server is None:
            _server = ForkServer()
            import atexit

            atexit.register(_server.close)
        return _server


def start() -> None:
    """Starts the shared server now, when enabled: its imports (~8 s on 2 vCPU) then run
    beside the caller's own instead of delaying the first command."""
    if enabled():
        _shared()


def run(
    module: str, args: Sequence[str], env: Optional[Mapping[str, str]] = None, **kwargs: Any
) -> int:
    """``python -m module *args``: a fork of the shared server when enabled and the
    command's PYTHONPATH is the server's, else a new interpreter. Its exit code."""
    environment = dict(os.environ if env is None else env)
    if enabled():
        server = _shared()
        if environment.get("PYTHONPATH", "") == server.pythonpath:
            return server.run(module, args, environment, **kwargs)
    stdout, stderr = kwargs.get("stdout"), kwargs.get("stderr")
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=environment,
        cwd=kwargs.get("cwd"),
        stdout=stdout,
        stderr=stderr,
        pass_fds=tuple(kwargs.get("pass_fds", ())),
        check=False,
    ).returncode


if __name__ == "__main__":
    main()
