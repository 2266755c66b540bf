"""tests/zygote.py, the fork server most test subprocesses run in: a command run through its
client behaves as under the real interpreter (arguments, working directory, environment,
streams, exit status, signals), so the tests that use it test the programs, not the server."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import python

SCRIPT = """import os, sys
print("argv", sys.argv[1:], "cwd", os.getcwd(), "env", os.environ.get("ZYGOTE_TEST"))
print("path0", sys.path[0])
print("to stderr", file=sys.stderr)
print("stdin", sys.stdin.read().strip())
sys.exit(int(sys.argv[1]))
"""


def _run(args, tmp_path, stdin=""):
    env = dict(os.environ, ZYGOTE_TEST="seen")
    return subprocess.run(args, cwd=tmp_path, env=env, input=stdin, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("interpreter", ["real", "zygote"])
def test_a_script_sees_what_the_real_interpreter_gives_it(tmp_path, interpreter):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "script.py").write_text(SCRIPT)
    executable = sys.executable if interpreter == "real" else python()
    result = _run([executable, "sub/script.py", "3", "a b"], tmp_path, stdin="hello")
    assert result.returncode == 3
    assert result.stdout.splitlines() == [
        f"argv ['3', 'a b'] cwd {tmp_path} env seen",
        f"path0 {tmp_path / 'sub'}",
        "stdin hello",
    ]
    assert result.stderr == "to stderr\n"


def test_dash_c_dash_m_tracebacks_and_other_options(tmp_path):
    result = _run([python(), "-c", "import sys; print(sys.argv); raise SystemExit('bye')", "x"], tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (1, "['-c', 'x']\n", "bye\n")
    result = _run([python(), "-m", "json.tool"], tmp_path, stdin='{"a": 1}')
    assert (result.returncode, result.stdout) == (0, '{\n    "a": 1\n}\n')
    result = _run([python(), "-c", "1 / 0"], tmp_path)
    assert result.returncode == 1 and result.stderr.strip().endswith("ZeroDivisionError: division by zero")
    # An option the client does not handle: the real interpreter runs it.
    result = _run([python(), "-I", "-c", "import sys; print(sys.flags.isolated)"], tmp_path)
    assert (result.returncode, result.stdout) == (0, "1\n")


def test_a_command_and_its_python_subprocesses_start_with_tensorflow_imported(tmp_path):
    check = "import sys; print(sys.executable, 'tensorflow' in sys.modules)"
    command = f"import subprocess, sys; {check}; subprocess.run([sys.executable, '-c', {check!r}])"
    result = _run([python(), "-c", command], tmp_path)
    assert result.stdout.splitlines() == [f"{python()} True"] * 2
    fresh = _run([sys.executable, "-c", check], tmp_path)
    assert fresh.stdout == f"{sys.executable} False\n"


def test_exit_as_the_interpreter_does(tmp_path):
    """Shutdown runs (a late print flushed, an error in __del__ reported), an uncaught error
    goes through sys.excepthook, a missing script exits 2, __main__ is the command's own."""
    late = "import sys\nclass C:\n    def __del__(self): raise ValueError('late')\n"
    late += "c = C()\nsys.stdout.write('unflushed')"
    for executable in (sys.executable, python()):
        result = _run([executable, "-c", late], tmp_path)
        assert (result.returncode, result.stdout) == (0, "unflushed")
        assert "Exception ignored" in result.stderr and "ValueError: late" in result.stderr
        hooked = "import sys; sys.excepthook = lambda *a: print('hooked', file=sys.stderr); 1 / 0"
        assert _run([executable, "-c", hooked], tmp_path).stderr == "hooked\n"
        missing = _run([executable, "missing.py"], tmp_path)
        assert missing.returncode == 2 and "can't open file" in missing.stderr
        main = "import sys, __main__; print(__main__.__dict__ is globals(), 'serve' in globals())"
        assert _run([executable, "-c", main], tmp_path).stdout == "True False\n"
    draws = {_run([python(), "-c", "import numpy; print(numpy.random.rand())"], tmp_path).stdout for _ in range(2)}
    assert len(draws) == 2, "each command draws its own numpy global state"


def test_a_broken_request_does_not_stop_the_server(tmp_path):
    import socket

    for partial in (b"", b"\0\0\0", b"\0\0\0\0\0\0\1\0{"):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(os.environ["TESTS_ZYGOTE_SOCKET"])
        if partial:
            socket.send_fds(client, [partial], [0, 1, 2])
        client.close()
    assert _run([python(), "-c", "print('still here')"], tmp_path).stdout == "still here\n"


def _wait_for_line(stream):
    line = stream.readline()
    assert line, "the command printed nothing"
    return line.strip()


def test_signals_reach_the_command_and_its_death_is_the_clients(tmp_path):
    loop = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
    client = subprocess.Popen([python(), "-c", loop], stdout=subprocess.PIPE, text=True)
    child = int(_wait_for_line(client.stdout))
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=10) == -signal.SIGTERM
    assert not _alive(child)
    # Ctrl-C: KeyboardInterrupt in the command, which then dies of SIGINT as Python does.
    client = subprocess.Popen([python(), "-c", loop], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_line(client.stdout)
    client.send_signal(signal.SIGINT)
    assert client.wait(timeout=10) == -signal.SIGINT
    assert "KeyboardInterrupt" in client.stderr.read()
    # The command killed outright: so is its client.
    client = subprocess.Popen([python(), "-c", loop], stdout=subprocess.PIPE, text=True)
    os.kill(int(_wait_for_line(client.stdout)), signal.SIGKILL)
    assert client.wait(timeout=10) == -signal.SIGKILL
    # A client started with SIGINT ignored (a background job of a script): so is the command.
    ignoring = subprocess.Popen(
        [python(), "-c", "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)"],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert ignoring.communicate(timeout=10)[0] == "True\n"
    # The client killed outright: the command does not outlive it.
    client = subprocess.Popen([python(), "-c", loop], stdout=subprocess.PIPE, text=True)
    child = int(_wait_for_line(client.stdout))
    client.kill()
    client.wait()
    deadline = time.time() + 5
    while _alive(child) and time.time() < deadline:
        time.sleep(0.01)
    assert not _alive(child)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
