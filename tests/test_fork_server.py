"""pipeline/fork_server.py: a command run as a fork behaves as `python -m module args` would."""

import os
import signal
import threading

import pytest

from pipeline import fork_server

PROBE = """
import os, sys, time
print("argv", sys.argv[1:], "cwd", os.getcwd(), "env", os.environ.get("PROBE_VALUE"))
print("to stderr", file=sys.stderr)
if os.environ.get("PROBE_FD"):
    os.write(int(os.environ["PROBE_FD"]), b"through the passed fd")
if os.environ.get("PROBE_SLEEP"):
    time.sleep(float(os.environ["PROBE_SLEEP"]))
if os.environ.get("PROBE_RAISE"):
    raise ValueError("probe failed")
sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe")
    (folder / "fork_probe.py").write_text(PROBE)
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [before])])
    try:
        running = fork_server.ForkServer()  # its children import from its sys.path
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before
    yield running
    running.close()


def _run(server, tmp_path, **env):
    out = open(tmp_path / "out.txt", "w+")
    code = server.run(
        "fork_probe",
        ["a", "b c"],
        env={**os.environ, **env},
        cwd=str(tmp_path),
        stdout=out.fileno(),
        stderr=out.fileno(),
    )
    out.seek(0)
    return code, out.read()


def test_argv_cwd_env_and_output_are_the_commands(server, tmp_path):
    code, text = _run(server, tmp_path, PROBE_VALUE="seen")
    assert code == 0
    assert f"argv ['a', 'b c'] cwd {tmp_path} env seen" in text and "to stderr" in text


def test_exit_codes_and_exceptions_are_the_interpreters(server, tmp_path):
    assert _run(server, tmp_path, PROBE_EXIT="3")[0] == 3
    code, text = _run(server, tmp_path, PROBE_RAISE="1")
    assert code == 1 and "ValueError: probe failed" in text and "Traceback" in text


def test_passed_fds_keep_their_numbers(server, tmp_path):
    read, write = os.pipe()
    high = os.dup2(write, 200)
    os.close(write)
    try:
        code = server.run("fork_probe", [], env={**os.environ, "PROBE_FD": "200"}, pass_fds=(200,))
        os.close(high)
        assert code == 0 and os.read(read, 100) == b"through the passed fd"
    finally:
        os.close(read)


def test_concurrent_commands_each_get_their_own_exit_code(server, tmp_path):
    codes = {}

    def one(n):
        codes[n] = server.run(
            "fork_probe", [], env={**os.environ, "PROBE_EXIT": str(n), "PROBE_SLEEP": "0.2"}
        )

    threads = [threading.Thread(target=one, args=(n,)) for n in range(1, 6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == {n: n for n in range(1, 6)}


def test_a_killed_command_reports_its_signal(server, tmp_path):
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(
            code=server.run("fork_probe", [], env={**os.environ, "PROBE_SLEEP": "30"})
        )
    )
    thread.start()

    def running():
        return [
            m["pid"]
            for m in list(server._waiting.values())  # pylint: disable=protected-access
            if "pid" in m and "exit" not in m
        ]

    while not running():
        threading.Event().wait(0.05)
    [pid] = running()
    os.kill(pid, signal.SIGKILL)
    thread.join(10)
    assert result["code"] == -signal.SIGKILL


def test_a_dead_server_is_a_clear_error(tmp_path):
    server = fork_server.ForkServer()
    server._process.kill()  # pylint: disable=protected-access
    server._process.wait()  # pylint: disable=protected-access
    with pytest.raises((fork_server.ForkServerError, OSError)):
        server.run("json.tool", ["--help"])
    server._socket.close()  # pylint: disable=protected-access


def test_switched_off_or_another_pythonpath_runs_a_new_interpreter(monkeypatch, tmp_path):
    monkeypatch.setenv(fork_server.ENV_SWITCH, "0")
    assert not fork_server.enabled()
    out = open(tmp_path / "out.txt", "w+")
    code = fork_server.run("json.tool", ["--help"], stdout=out.fileno(), stderr=out.fileno())
    out.seek(0)
    assert code == 0 and "usage" in out.read()


def test_a_server_that_ran_nothing_is_not_waited_for_at_close():
    """A run whose nodes were all cached started the server for nothing: closing it kills
    it at once (mid-import), instead of waiting for its imports to end."""
    server = fork_server.ForkServer()
    server.close()
    assert server._process.returncode == -signal.SIGKILL  # pylint: disable=protected-access
