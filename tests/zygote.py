"""A fork server for the tests' Python commands: TensorFlow imported once, each command a fork.

A documented command such as `.venv/bin/python evaluate.py ...` spends about 2.5 of its 5
seconds importing TensorFlow. Here one server process (`serve`) imports the heavy third-party
packages once (PRELOAD, never the project's own modules, which each command imports fresh
from its working directory) and forks a child per command. The command line runs through a
small client (`SHIM`, a script installed as a venv's `bin/python`), which sends the server
its arguments, working directory, environment, ignored signals and standard streams
(SCM_RIGHTS; the child's `sys.executable` is the client, so the Python processes a command
starts fork too), forwards the signals it receives to the child, and exits as the child did:
its exit code, or killed by the same signal. The child runs the script as the interpreter
would (a new `__main__` module, `__file__` absolute, `sys.path[0]` the script's folder, exit
through the interpreter's own shutdown: atexit, threads, tracebacks, "Exception ignored"),
in a session of its own; if the client is killed outright, the child sees the connection
close and kills its process group. A command the client does not understand (any
interpreter option other than `-c` and `-m`), or no server, runs the real interpreter (`exec`).

What differs from a fresh interpreter: nothing TensorFlow prints while it loads reaches the
command's stderr (the server's, in `server.err`); the children share the server's hash seed
(`PYTHONHASHSEED`, `sys.flags`, `-W` and other start-up settings are the server's); a SIGKILL
of the client kills the command a moment later, not at once; `os.getppid()` is the server.
So tests of a start-up, of set-order determinism between two runs, or that SIGKILL a command
and reuse what it held at once run the real interpreter (`sys.executable`, or
`run_script(fresh=True)`).

Used by tests/test_docs.py (the documented commands) and through tests/helpers.python():
run_script, and the tests that start train.py or evaluate.py themselves (the signal test,
the trainer/evaluator pairs, the continuous evaluator).
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
FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")

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
signals = [getattr(signal, name) for name in {forwarded!r}]
ignored = [s for s in signals if signal.getsignal(s) == signal.SIG_IGN]
pending = []
# Every signal is forwarded, ignored here or not: a real interpreter started with SIGINT ignored
# (a background job) still takes it once it installs a handler (train.py's SignalCatcher), so the
# child decides; it starts with this process's dispositions (`ignored`), as an exec would.
for signum in signals:  # Until the child is known, signals wait.
    signal.signal(signum, lambda signum, frame: pending.append(signum))
me = os.path.abspath(sys.argv[0])
request = {{"argv": args, "cwd": os.getcwd(), "env": dict(os.environ), "executable": me, "ignored": ignored}}
request = json.dumps(request).encode()
socket.send_fds(client, [struct.pack("!Q", len(request))], [0, 1, 2])
client.sendall(request)
stream = client.makefile("rb")
line = stream.readline()
if not line.startswith(b"P"):
    sys.exit("error: tests/zygote.py: the server closed the connection before starting the command")
child = int(line[1:])
def forward(signum, frame):
    try:
        os.kill(child, signum)
    except ProcessLookupError:
        pass
for signum in signals:
    signal.signal(signum, forward)
for signum in pending:
    forward(signum, None)
line = stream.readline()
if not line.startswith(b"S"):
    sys.exit("error: tests/zygote.py: the server closed the connection before the command ended")
status = int(line[1:])
if status < 0:
    try:
        signal.signal(-status, signal.SIG_DFL)
    except (OSError, ValueError):
        pass  # SIGKILL and SIGSTOP keep their default.
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
            [sys.executable, os.path.abspath(__file__), socket_path, str(os.getpid())],
            cwd=root,
            env=dict(os.environ, PYTHONPATH=root),
            stdin=subprocess.DEVNULL,
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
        f.write(SHIM.format(real=real_python, env=SOCKET_ENV, forwarded=FORWARDED))
    os.chmod(path, 0o755)


def _receive(connection):
    """`(request, fds)` from a client, or None if it sent less (then nothing is left open)."""
    connection.settimeout(30)  # A client stopped half-way does not hold the others up.
    fds = []
    try:
        header, fds, _, _ = socket.recv_fds(connection, 8, 3)
        (length,) = struct.unpack("!Q", header)
        request = b""
        while len(request) < length:
            chunk = connection.recv(length - len(request))
            if not chunk:
                raise ConnectionError("the client closed the connection")
            request += chunk
        request = json.loads(request)
        if len(fds) != 3:
            raise ConnectionError(f"{len(fds)} file descriptors, not 3")
        connection.settimeout(None)
        return request, fds
    except (OSError, ValueError, struct.error):
        for fd in fds:
            os.close(fd)
        connection.close()
        return None


def serve(socket_path, parent):
    """Imports PRELOAD, then forks a child per connection until `parent` is gone."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # common.runtime.hide_native_logs, not imported here.
    for name in PRELOAD:
        importlib.import_module(name)
    base_path = [p for p in sys.path[1:] if p not in os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    children = {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while os.getppid() == parent:  # The tests' process, gone even before this started: stop.
        if selector.select(timeout=0.05):
            connection, _ = listener.accept()
            received = _receive(connection)
            if received is None:
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                selector.close()
                listener.close()
                for other in children.values():
                    other.close()
                _child(connection, *received, base_path)
                return  # The command ended normally: exit 0, through the interpreter's shutdown.
            for fd in received[1]:
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
    """Runs the command in this forked process. Its exceptions and SystemExit propagate out of
    `serve`, to the interpreter's own handling: traceback, exit code, shutdown."""
    import threading
    import types

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.setsid()  # Its own process group, killed whole if the client dies.
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for name in FORWARDED:
        signum = getattr(signal, name)
        ignored = signum in request["ignored"]
        signal.signal(signum, signal.SIG_IGN if ignored else signal.SIG_DFL)
    if signal.SIGINT not in request["ignored"]:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.modules["numpy"].random.seed()  # Not the server's global state: each run its own, as a fresh start.
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    sys.stdout.reconfigure(line_buffering=unbuffered or os.isatty(1), write_through=unbuffered)
    connection.sendall(b"P%d\n" % os.getpid())

    def watch():  # The client killed outright: this command and what it started go too.
        try:
            while connection.recv(1024):
                pass
        except OSError:  # Reset, not closed: a client killed with data unread is gone all the same.
            pass
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()
    args = request["argv"]
    python_path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.executable = request["executable"]  # The client: the command's own Python commands fork too.
    if args[0] == "-m":
        import runpy

        sys.argv = [args[1], *args[2:]]
        sys.path[:] = [os.getcwd(), *python_path, *base_path]
        sys.modules["__main__"] = types.ModuleType("__main__")  # It runs in __main__'s namespace.
        runpy._run_module_as_main(args[1])  # What `python -m` itself runs.
        return
    main = types.ModuleType("__main__")
    if args[0] == "-c":
        sys.argv, first, source, filename = ["-c", *args[2:]], "", args[1], "<string>"
    else:
        path = os.path.abspath(args[0])
        sys.argv, first, filename = list(args), os.path.dirname(os.path.realpath(path)), path
        try:
            with open(path, "rb") as f:
                source = f.read()
        except OSError as error:
            message = f"can't open file {path!r}: [Errno {error.errno}] {error.strerror}"
            print(f"{sys.executable}: {message}", file=sys.stderr)
            raise SystemExit(2) from None
        main.__file__ = path
    sys.path[:] = [first, *python_path, *base_path]
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    exec(compile(source, filename, "exec"), main.__dict__)  # noqa: S102  The command itself.


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
