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
