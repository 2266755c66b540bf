"""A fork server for the tests' Python commands: TensorFlow imported once, each command a fork.

A documented command such as `.venv/bin/python evaluate.py ...` spends about 2.5 of its 5
seconds importing TensorFlow. Here one server process (`serve`) imports the heavy third-party
packages once (PRELOAD, never the project's own modules, which each command imports fresh
from its working directory) and forks a child per command. The command line runs through a
small client (`SHIM`, a script installed as a venv's `bin/python`), which sends the server
its arguments, working directory, environment and standard streams (SCM_RIGHTS; the child's
`sys.executable` is the client, so the Python processes a command starts fork too), forwards
the signals it receives to the child, and exits as the child did: its exit code, or killed
by the same signal. If the client is killed outright, the child sees the connection close
and kills itself. A command the client does not understand (any interpreter option other
than `-c` and `-m`), or no server, runs the real interpreter as before (`exec`).

Used by tests/test_docs.py (the documented commands) and tests/helpers.run_script. Tests
about a process's own start-up (its first lines, its warnings) run the real interpreter.
"""

import importlib
import json
import os
import selectors
import signal
import socket
import struct
import sys

PRELOAD = ("tensorflow", "tensorflow_estimator", "numpy", "gin", "absl.app", "absl.flags", "PIL.Image")
SOCKET_ENV = "TESTS_ZYGOTE_SOCKET"

# The client: run by the real venv interpreter with -S (no site: about 20 ms), so it imports
# only the standard library. `{real}` is the real interpreter.
SHIM = r"""#!{real} -S
import json, os, signal, socket, struct, sys
REAL = {real!r}
args = sys.argv[1:]
path = os.environ.get({env!r})
ok = path and args and (args[0] in ("-c", "-m") and len(args) > 1 or not args[0].startswith("-"))
client = None
if ok:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(path)
    except OSError:
        client = None
if client is None:
    os.execv(REAL, [REAL, *args])
me = os.path.abspath(sys.argv[0])
request = json.dumps({{"argv": args, "cwd": os.getcwd(), "env": dict(os.environ), "executable": me}}).encode()
socket.send_fds(client, [struct.pack("!Q", len(request))], [0, 1, 2])
client.sendall(request)
stream = client.makefile("rb")
child = int(stream.readline()[1:])
def forward(signum, frame):
    try:
        os.kill(child, signum)
    except ProcessLookupError:
        pass
for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(signum, forward)
line = stream.readline()
if not line.startswith(b"S"):
    sys.exit(255)
status = int(line[1:])
if status < 0:
    signal.signal(-status, signal.SIG_DFL)
    os.kill(os.getpid(), -status)
sys.exit(status)
"""


def start(directory):
    """A server for this process's tests, its socket and client in `directory`: returns the
    server's Popen once it has imported PRELOAD. It stops when this process exits."""
    import subprocess

    socket_path = os.path.join(directory, "socket")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(directory, "server.err"), "w") as err:
        server = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), socket_path],
            cwd=root,
            env=dict(os.environ, PYTHONPATH=root),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,  # Not in the tests' process group: a test's killpg spares it.
        )
    if server.stdout.readline().strip() != "ready":
        server.kill()
        with open(os.path.join(directory, "server.err")) as err:
            raise RuntimeError(f"tests/zygote.py did not start:\n{err.read()}")
    install_shim(os.path.join(directory, "python"), sys.executable)
    return server, socket_path


def install_shim(path, real_python):
    """Writes the client to `path` (executable), running `real_python` when it cannot fork."""
    with open(path, "w") as f:
        f.write(SHIM.format(real=real_python, env=SOCKET_ENV))
    os.chmod(path, 0o755)


def serve(socket_path):
    """Imports PRELOAD, then forks a child per connection until its parent exits."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # common.runtime.hide_native_logs, not imported here.
    for name in PRELOAD:
        importlib.import_module(name)
    base_path = [p for p in sys.path[1:] if p not in os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    parent, children = os.getppid(), {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while os.getppid() == parent:
        if selector.select(timeout=0.05):
            connection, _ = listener.accept()
            header, fds, _, _ = socket.recv_fds(connection, 8, 3)
            (length,) = struct.unpack("!Q", header)
            request = b""
            while len(request) < length:
                request += connection.recv(length - len(request))
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                selector.close()
                listener.close()
                for other in children.values():
                    other.close()
                _child(connection, json.loads(request), fds, base_path)  # Never returns.
            for fd in fds:
                os.close(fd)
            children[pid] = connection
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            connection = children.pop(pid)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            try:
                connection.sendall(b"S%d\n" % code)
            except OSError:
                pass  # The client is gone.
            connection.close()


def _child(connection, request, fds, base_path):
    import runpy
    import threading
    import traceback

    code, interrupted = 1, False
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        connection.sendall(b"P%d\n" % os.getpid())

        def watch():  # The client killed outright: this command goes too.
            while connection.recv(1024):
                pass
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=watch, daemon=True).start()
        args = request["argv"]
        python_path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        if args[0] == "-c":
            sys.argv, first = ["-c", *args[2:]], ""
        elif args[0] == "-m":
            sys.argv, first = [args[1], *args[2:]], os.getcwd()
        else:
            sys.argv, first = list(args), os.path.dirname(os.path.realpath(args[0]))
        sys.path[:] = [first, *python_path, *base_path]
        sys.executable = request["executable"]  # The client: the command's own Python commands fork too.
        try:
            if args[0] == "-c":
                exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102
            elif args[0] == "-m":
                runpy.run_module(args[1], run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(args[0], run_name="__main__")
            code = 0
        except SystemExit as exit_:
            if exit_.code is None or isinstance(exit_.code, int):
                code = exit_.code or 0
            else:
                print(exit_.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:
            traceback.print_exc()
            interrupted = True  # Python's own exit after Ctrl-C: killed by SIGINT.
        except BaseException:
            traceback.print_exc()
            code = 1
        threading._shutdown()  # As the interpreter's own exit: wait for non-daemon threads,
        import atexit

        atexit._run_exitfuncs()  # then run atexit's functions.
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            if interrupted:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGINT)
            os._exit(code)


if __name__ == "__main__":
    serve(sys.argv[1])
