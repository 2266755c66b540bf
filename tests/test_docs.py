"""Docs cannot rot: every shell command in README.md and docs/*.md is run here.

What counts as a command: the text of a fenced block whose info string is exactly
`bash`. A ```python block is run too, in this process (`test_documented_python_runs`):
each document's blocks in page order, sharing one namespace, from the repository root,
so a snippet builds on the one before it and its `assert`s are checked. Any other block
(plain ``` with no language, ```gin, ```text ...) is text and is never run; `sh`,
`shell`, `console` and `zsh` blocks are refused (they would be skipped silently), so
write `bash`. Commands in running prose are not run either.

Inside a bash block, as bash reads it: a backslash-newline joins two lines (also inside
double quotes), a newline inside quotes or `$(...)` continues the command, `#` at the
start of a word begins a comment. A line that only assigns a variable (`E="..."`) is
kept and given to each later command of the same block, so `$E` works; a trailing `&`
starts a command in the background, waited for (exit code 0) at the end of its block.
`cmd || true` followed by the comment line `# error: <message>` is an expected failure:
its stderr must contain that line exactly, so the documented message is checked too.
Every other command must exit 0.

How they run: in a scratch copy of the repository (the files `git ls-files` lists,
tracked or not ignored; `.venv` the real one seen through links, but for its `python`,
tests/zygote.py's client, which forks a server that imported TensorFlow once; the complete synthetic
datasets copied, since docs/fork.md rewrites one in place), with the scratch copy as
the working directory and on PYTHONPATH (the editable install would otherwise import
the real checkout's code from tools/), one document after another in the order of
DOCUMENTS and in page order within each, as a reader following the pages would. The
documents share that copy: docs/*.md start "after `make train`", which the README ran.

Tiny settings: every train.py, evaluate.py, tools/export.py and
tools/launch_local_cluster.py command (whose train.py flags come last) gets
`--gin_file=tests/tiny.gin` appended (a later gin file overrides an earlier one, a
documented --gin_param still wins) and `make train` gets `ARGS=--gin_file=tests/tiny.gin`.
SUBSTITUTIONS and SKIP below are the only other departures from the pages.
"""

import dataclasses
import glob
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from tests import helpers, zygote
from tests.conftest import REPO_ROOT

DOCUMENTS = ["README.md", *sorted(os.path.relpath(p, REPO_ROOT) for p in glob.glob(f"{REPO_ROOT}/docs/*.md"))]

# The fewest commands each document must yield, so a harness that stops finding them
# (or a page that loses its examples) is noticed. A new document needs a line here.
MIN_COMMANDS = {
    "README.md": 19,
    "docs/benchmarks.md": 0,  # Its commands are the benchmarks (minutes each), in prose: `make bench` runs them.
    "docs/data.md": 7,
    "docs/estimator.md": 0,  # Its examples are python blocks (test_documented_python_runs).
    "docs/distributed.md": 2,
    "docs/evaluation.md": 13,
    "docs/fork.md": 9,
    "docs/gpu.md": 1,
    "docs/recipes.md": 6,
    "docs/reliability.md": 2,  # A table of cases and their tests, then the trainer/evaluator pair.
}

TINY_GIN = "tests/tiny.gin"
TINY_FLAG = f"--gin_file={TINY_GIN}"
TINY_MAKE_ARGS = f"ARGS={TINY_FLAG}"

# Text replaced in a command before it runs, and why.
SUBSTITUTIONS = [
    # The documented run checkpoints every 200 of 1,500 steps; tests/tiny.gin every 10 of 20.
    ("runs/synthetic/model.ckpt-1000", "runs/synthetic/model.ckpt-10", "tiny runs checkpoint at steps 0, 10 and 20"),
    ("runs/synthetic/eval@1000", "runs/synthetic/eval@10", "and evaluate at steps 10 and 20"),
    ("runs/synthetic/eval@1400", "runs/synthetic/eval@10", "the same"),
    # A tiny run's mean IoU is about 0.17: the gates' values scaled to it.
    ("'mean_iou >= 0.95'", "'mean_iou >= 0.15'", "a value the tiny run reaches"),
    ("'slice:class:* mean_iou >= 0.9'", "'slice:class:* mean_iou >= 0.1'", "the same, per class"),
    # docs/distributed.md's clusters train 200 steps (a documented --gin_param wins over tiny.gin);
    # tests/test_cluster.py runs longer jobs, with faults, and checks what they write.
    ("--gin_param='TRAIN_STEPS = 200'", "--gin_param='TRAIN_STEPS = 20'", "tiny.gin's 20 steps"),
    # The converter times 10 training steps of the gin file it writes; 2 show the same path.
    ("tools/build_dataset.py --name=", "tools/build_dataset.py --measure_steps=2 --name=", "a shorter speed measure"),
]

# Commands not run: a substring of the command as written -> why.
SKIP = {
    "make test": "the test suite itself (this test is part of it)",
    "make tensorboard": "a server that runs until stopped",
    "tools/tensorboard_screenshot.py": "needs headless Chromium (Debian's chromium), not a test dependency",
}

COMMAND_TIMEOUT = 300  # Seconds per command; the slowest tiny one takes about 15 s.
SCRIPTS = re.compile(r"(?<![\w./-])(?:\./)?(?:train|evaluate|tools/export|tools/launch_local_cluster)\.py(?![\w.])")
MAKE_TRAIN = re.compile(r"(?<![\w./-])make\s+train(?![\w.-])")
ASSIGNMENT = re.compile(r"[A-Za-z_]\w*=")
FENCE = re.compile(r"^(\s*)```(.*)$")
UNRUN_SHELL_LANGUAGES = {"sh", "shell", "console", "zsh"}


@dataclasses.dataclass
class Command:
    doc: str
    line: int  # Of the command's first character in the document.
    block: int  # Index of its bash block in the document.
    text: str  # As written: continuations joined, comments removed.
    comments: list = dataclasses.field(default_factory=list)  # Whole-line comments right after it.

    @property
    def expected_error(self):
        """`error: ...` when the page shows this command failing (`|| true` then `# error: ...`)."""
        if not self.text.endswith("|| true"):
            return None
        for comment in self.comments:
            if comment.startswith("# error:"):
                return comment[2:].strip()
        return None

    def where(self) -> str:
        return f"{self.doc}:{self.line}"


# --- The extractor -------------------------------------------------------------------


def fenced_blocks(text: str):
    """`[(info string, line of the first body line, body)]` of every ``` block."""
    blocks, info, start, body = [], None, 0, []
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if info is None and fence:
            info, start, body = fence.group(2).strip(), number + 1, []
        elif info is not None and fence and not fence.group(2).strip():
            blocks.append((info, start, "\n".join(body) + "\n"))
            info = None
        elif info is not None:
            body.append(line)
    return blocks


def _contexts(text: str):
    """The shell context before each character of `text` (and one after the last).

    Each is `(stack, escaped)`: `stack` the open quotes and parentheses (`'`, `"`,
    `$(`, `(`), innermost last; `escaped` True right after an unquoted backslash.
    Enough shell for documentation: no here-documents, no backticks, no `$'...'`.
    """
    contexts, stack, escaped = [], [], False
    for i, char in enumerate(text):
        contexts.append((tuple(stack), escaped))
        top = stack[-1] if stack else None
        if escaped:
            escaped = False
        elif top == "'":
            if char == "'":
                stack.pop()
        elif char == "\\":
            escaped = True
        elif top == '"':
            if char == '"':
                stack.pop()
            elif char == "(" and text[i - 1] == "$":
                stack.append("$(")
        elif char in "'\"":
            stack.append(char)
        elif char == "(":
            stack.append("$(" if i and text[i - 1] == "$" else "(")
        elif char == ")" and top in ("$(", "("):
            stack.pop()
    contexts.append((tuple(stack), escaped))
    return contexts


def split_commands(body: str, doc: str = "", first_line: int = 1, block: int = 0):
    """The commands of one bash block's body, in order (see the module docstring)."""
    contexts = _contexts(body)
    commands, current, start, line, i = [], [], None, first_line, 0

    def flush():
        text = "".join(current).strip()
        if text:
            commands.append(Command(doc, start, block, text))

    while i < len(body):
        char, (stack, escaped) = body[i], contexts[i]
        if char == "\\" and not escaped and stack[-1:] != ("'",) and body[i + 1 : i + 2] == "\n":
            i, line = i + 2, line + 1  # A continuation: bash drops the backslash and the newline.
            continue
        at_word_start = not current or current[-1] in " \t;&|("
        if char == "#" and not stack and not escaped and at_word_start:
            end = body.find("\n", i)
            end = len(body) if end < 0 else end
            if not "".join(current).strip() and commands:
                commands[-1].comments.append(body[i:end].strip())
            i = end
            continue
        if char == "\n" and not stack and not escaped:
            flush()
            current, start, line, i = [], None, line + 1, i + 1
            continue
        if start is None and not char.isspace():
            start = line
        if char == "\n":
            line += 1
        current.append(char)
        i += 1
    flush()
    return commands


def document_commands(doc: str):
    """Every command of `doc`'s bash blocks, in page order."""
    with open(os.path.join(REPO_ROOT, doc)) as f:
        blocks = fenced_blocks(f.read())
    commands = []
    for index, (info, first_line, body) in enumerate(blocks):
        if info == "bash":
            commands += split_commands(body, doc, first_line, index)
    return commands


def is_assignment(text: str) -> bool:
    """True for a line that only assigns a shell variable: `E="--gin_file=... --model_dir=..."`."""
    if not ASSIGNMENT.match(text):
        return False
    contexts = _contexts(text)
    return not any(char.isspace() and not contexts[i][0] for i, char in enumerate(text))


def is_background(text: str) -> bool:
    """True for `command &` (not `a && b`)."""
    contexts = _contexts(text)
    return text.endswith("&") and not text.endswith("&&") and not contexts[len(text) - 1][0]


def _end_of_simple_command(text: str, start: int) -> int:
    """Where the simple command around `text[start]` ends: at its closing quote when it
    stands in quotes (`T='python train.py ...'`), else before the first `|`, `&`, `;`
    or `)` of its own level."""
    contexts = _contexts(text)
    level = contexts[start][0]
    quoted = level[-1:] in (("'",), ('"',))
    for j in range(start, len(text)):
        stack, escaped = contexts[j]
        if quoted and len(contexts[j + 1][0]) < len(level):
            return j
        if not quoted and stack == level and not escaped and text[j] in "|&;)":
            if text[j] == "&" and (text[j - 1 : j] in ("<", ">") or text[j + 1 : j + 2] == ">"):
                continue  # A redirection: 2>&1, &>file.
            return j
    return len(text)


def _insert(text: str, at: int, words: str) -> str:
    left = text[:at].rstrip()
    return f"{left} {words}{text[len(left) : at]}{text[at:]}"


def with_tiny_settings(text: str) -> str:
    """`text` with the tiny gin file given to each train, evaluate and export command in it."""
    inserts = [(m.end(), TINY_FLAG) for m in SCRIPTS.finditer(text)]
    for m in MAKE_TRAIN.finditer(text):
        if "ARGS=" in text[m.end() : _end_of_simple_command(text, m.end())]:
            raise ValueError(f"the harness sets ARGS for `make train`, which this command sets itself: {text}")
        inserts.append((m.end(), TINY_MAKE_ARGS))
    for position, words in sorted(inserts, reverse=True):
        text = _insert(text, _end_of_simple_command(text, position), words)
    return text


def as_run(command: Command) -> str:
    text = command.text
    for old, new, _ in SUBSTITUTIONS:
        text = text.replace(old, new)
    return with_tiny_settings(text)


def skip_reason(command: Command):
    return next((reason for key, reason in SKIP.items() if key in command.text), None)


# --- Running them --------------------------------------------------------------------


def _tail(output: str, lines: int) -> str:
    return "\n".join((output or "").rstrip().splitlines()[-lines:])


def _report(command, script, what, stdout="", stderr=""):
    ran = "\n".join("    " + line for line in script.splitlines())
    return (
        f"{command.where()}: {what}\n"
        f"  as written:\n    {command.text}\n"
        f"  as run (after the block's variables, in bash -c, in the scratch copy):\n{ran}\n"
        f"--- stderr (last 40 lines) ---\n{_tail(stderr, 40)}\n"
        f"--- stdout (last 15 lines) ---\n{_tail(stdout, 15)}"
    )


def _environment(scratch):
    # As a reader's shell would have it: no make or TF_CONFIG state from whoever runs
    # pytest, and the scratch copy importable first (the reader's editable install).
    dropped = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "TF_CONFIG", "PYTHONPATH"}
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env["PYTHONPATH"] = str(scratch)
    return env


def _start(script, scratch, stdout=subprocess.PIPE, stderr=subprocess.PIPE):
    # A session of its own: a timeout kills the command and everything it started.
    return subprocess.Popen(
        ["bash", "-c", script],
        cwd=scratch,
        env=_environment(scratch),
        stdout=stdout,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )


def _kill(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)


def _run(command, script, scratch):
    process = _start(script, scratch)
    try:
        stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill(process)
        stdout, stderr = process.communicate()
        pytest.fail(_report(command, script, f"still running after {COMMAND_TIMEOUT} s", stdout, stderr))
    return process.returncode, stdout, stderr


def _check(command, script, code, stdout, stderr):
    if code != 0:
        pytest.fail(_report(command, script, f"exit code {code}", stdout, stderr))
    expected = command.expected_error
    if expected and expected not in [line.strip() for line in stderr.splitlines()]:
        pytest.fail(_report(command, script, f"the page shows the error {expected!r}, not on stderr", stdout, stderr))


def _wait(background, scratch):
    for command, script, process, out_path, err_path in background:
        try:
            process.wait(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill(process)
            process.wait()
        with open(out_path) as out, open(err_path) as err:
            stdout, stderr = out.read(), err.read()
        code = process.returncode if process.returncode is not None else "none (killed)"
        _check(command, script, code, stdout, stderr)


def run_commands(commands, scratch, logs):
    """Runs `commands` in order in `scratch`; returns `[(command, seconds or skip reason)]`."""
    timings, variables, background, block = [], [], [], None
    try:
        for command in commands:
            if command.block != block:
                _wait(background, scratch)
                variables, background, block = [], [], command.block
            reason = skip_reason(command)
            if reason:
                timings.append((command, f"skipped: {reason}"))
                continue
            script = "\n".join([*variables, as_run(command)])
            start = time.time()
            if is_background(command.text):
                out_path, err_path = logs / f"{command.line}.out", logs / f"{command.line}.err"
                with open(out_path, "w") as out, open(err_path, "w") as err:
                    process = _start(script[:-1], scratch, stdout=out, stderr=err)
                background.append((command, script, process, out_path, err_path))
            else:
                _check(command, script, *_run(command, script, scratch))
                if is_assignment(command.text):
                    variables.append(as_run(command))
            timings.append((command, time.time() - start))
        _wait(background, scratch)
        background = []
    finally:
        for _, _, process, _, _ in background:
            _kill(process)
    return timings


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A scratch copy of the repository to run the pages in; the checkout stays untouched."""
    venv = os.path.join(REPO_ROOT, ".venv")
    if not os.path.exists(os.path.join(venv, ".installed-requirements")):
        pytest.skip("needs the project's .venv: run through `make test`")
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    if listing.returncode != 0:
        pytest.skip(f"not a git checkout: {listing.stderr.strip()}")
    root = tmp_path_factory.mktemp("docs") / "repo"
    for path in listing.stdout.split("\0"):
        source = os.path.join(REPO_ROOT, path)
        if path and os.path.isfile(source):  # Not a file deleted from the work tree.
            os.makedirs(root / os.path.dirname(path), exist_ok=True)
            # copy2 keeps modification times: the Makefile compares requirements.txt
            # and pyproject.toml with the venv's stamp.
            shutil.copy2(source, root / path)
    _venv_with_zygote(venv, root / ".venv")
    # Copies, not links: `python -m data.synthetic --output_dir=...` rewrites a dataset in place.
    for marker in glob.glob(os.path.join(REPO_ROOT, "datasets", "synthetic*", "dataset.json")):
        folder = os.path.dirname(marker)
        shutil.copytree(folder, root / "datasets" / os.path.basename(folder))
    stale = subprocess.run(["make", "-q", ".venv/.installed-requirements"], cwd=root, env=_environment(root))
    if stale.returncode != 0:
        pytest.fail(
            "the venv is older than requirements.txt or pyproject.toml: run `make venv` first "
            "(`make train` in the scratch copy would reinstall the project from it into the shared venv)"
        )
    (root.parent / "logs").mkdir()
    # What the pages create in the scratch copy must not appear in the checkout too
    # (compared as names only, so someone working in the checkout meanwhile is no failure).
    places = ("", "datasets", "runs")
    before = {place: _names(REPO_ROOT, place) for place in places}
    copied = {place: _names(root, place) for place in places}
    yield root
    leaked = {
        place: sorted((_names(root, place) - copied[place]) & (_names(REPO_ROOT, place) - before[place]))
        for place in places
    }
    assert not any(leaked.values()), f"documented commands wrote into the checkout: {leaked}"


def _venv_with_zygote(venv, scratch_venv):
    """The real venv, seen through links, but for `bin/python`: tests/zygote.py's client, so
    the pages' `.venv/bin/python ...` (and `make`'s) fork a server that imported TensorFlow
    once instead of importing it again, about 2.5 s a command."""
    os.makedirs(scratch_venv / "bin")
    for name in os.listdir(venv):
        if name != "bin":
            os.symlink(os.path.join(venv, name), scratch_venv / name)
    for name in os.listdir(os.path.join(venv, "bin")):
        if name != "python":
            os.symlink(os.path.join(venv, "bin", name), scratch_venv / "bin" / name)
    zygote.install_shim(scratch_venv / "bin" / "python", os.path.join(venv, "bin", "python"))
    helpers.python()  # The server the client talks to (its socket in the environment).


def _names(base, place):
    path = os.path.join(base, place)
    return set(os.listdir(path)) if os.path.isdir(path) else set()


# --- The tests -----------------------------------------------------------------------


def test_extractor_reads_bash_as_bash():
    body = (
        'E="--gin_file=a.gin --model_dir=runs/x"   # a comment\n'
        "python train.py $E \\\n"
        "    --gin_param='X = 1' || true\n"
        "# error: gin: something\n"
        "\n"
        'python -c "import os\n'
        "print('#', os.sep)\" | tail -1\n"
        "T='python evaluate.py $E'\n"
        "make train CONFIG=c.gin &\n"
    )
    commands = split_commands(body, "doc.md", 10)
    assert [(c.line, c.text) for c in commands] == [
        (10, 'E="--gin_file=a.gin --model_dir=runs/x"'),
        (11, "python train.py $E     --gin_param='X = 1' || true"),
        (15, "python -c \"import os\nprint('#', os.sep)\" | tail -1"),
        (17, "T='python evaluate.py $E'"),
        (18, "make train CONFIG=c.gin &"),
    ]
    assert commands[1].expected_error == "error: gin: something"
    assert [is_assignment(c.text) for c in commands] == [True, False, False, True, False]
    assert [is_background(c.text) for c in commands] == [False, False, False, False, True]
    assert [with_tiny_settings(c.text) for c in commands[1:]] == [
        f"python train.py $E     --gin_param='X = 1' {TINY_FLAG} || true",
        "python -c \"import os\nprint('#', os.sep)\" | tail -1",
        f"T='python evaluate.py $E {TINY_FLAG}'",
        f"make train CONFIG=c.gin {TINY_MAKE_ARGS} &",
    ]
    assert with_tiny_settings("python train.py $E 2>&1 | tail -3") == f"python train.py $E 2>&1 {TINY_FLAG} | tail -3"
    assert (
        with_tiny_settings("M=$(python tools/export.py $E) && echo $M")
        == f"M=$(python tools/export.py $E {TINY_FLAG}) && echo $M"
    )


def test_runner_reports_the_page_the_command_and_its_stderr(tmp_path):
    good = 'X=oops\necho "error: $X" >&2 || true\n# error: oops\nsleep 0.1 &\ntrue 2>&1 | cat\n'
    assert len(run_commands(split_commands(good, "page.md", 5), tmp_path, tmp_path)) == 4
    for body, message, output in [
        ("echo oops >&2; exit 3\n", "exit code 3", "oops"),
        ("echo other >&2 || true\n# error: expected\n", "the page shows the error 'error: expected'", "other"),
        ("echo gone >&2; false &\n", "exit code 1", "gone"),
    ]:
        with pytest.raises(pytest.fail.Exception) as failure:
            run_commands(split_commands(body, "page.md", 5), tmp_path, tmp_path)
        report = str(failure.value)
        assert f"page.md:5: {message}" in report and output in report, report


def test_every_document_yields_its_commands():
    assert sorted(MIN_COMMANDS) == sorted(DOCUMENTS), "every document under docs/ needs a line in MIN_COMMANDS"
    counts = {doc: len(document_commands(doc)) for doc in DOCUMENTS}
    short = {doc: (count, MIN_COMMANDS[doc]) for doc, count in counts.items() if count < MIN_COMMANDS[doc]}
    assert not short, f"commands found vs expected at least: {short}"


def test_harness_tables_match_the_pages():
    commands = [command for doc in DOCUMENTS for command in document_commands(doc)]
    for key in SKIP:
        assert any(key in command.text for command in commands), f"SKIP entry {key!r} matches no command"
    for old, _, _ in SUBSTITUTIONS:
        assert any(old in command.text for command in commands), f"SUBSTITUTIONS entry {old!r} matches no command"
    for command in commands:
        if command.text.endswith("|| true"):
            assert command.expected_error, f"{command.where()}: `|| true` needs a `# error: ...` line after it"
    for doc in DOCUMENTS:
        with open(os.path.join(REPO_ROOT, doc)) as f:
            languages = {info for info, _, _ in fenced_blocks(f.read())}
        assert not languages & UNRUN_SHELL_LANGUAGES, f"{doc}: write ```bash, the only blocks run"


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCUMENTS)
def test_documented_commands_run(doc, scratch):
    started = time.time()
    timings = run_commands(document_commands(doc), scratch, scratch.parent / "logs")
    print(f"{doc}: {len(timings)} commands in {time.time() - started:.0f} s")
    for command, outcome in timings:
        shown = outcome if isinstance(outcome, str) else f"{outcome:5.1f} s"
        print(f"  {command.where():>22}  {shown}  {command.text[:90]}")


def test_the_evaluation_cycle_picture_names_only_what_exists():
    """docs/evaluation.md's `train_and_evaluate` cycle names code: each dotted name in it
    (`core.results.ResultsReporter`, `tf.estimator.BestExporter`, ...) must resolve."""
    import importlib

    import tensorflow as tf

    text = open(os.path.join(REPO_ROOT, "docs", "evaluation.md")).read()
    picture = text.split("### One `train_and_evaluate` cycle, in order", 1)[1].split("```text\n", 1)[1]
    picture = picture.split("```", 1)[0]
    names = sorted(set(re.findall(r"\b(?:tf|core|hooks|metrics|models)(?:\.\w+)+", picture)))
    names += ["tf.compat.v1.train.SessionRunHook.before_run", "tf.compat.v1.train.SessionRunHook.after_run"]
    names += ["tf.compat.v1.train.SessionRunHook.begin", "tf.compat.v1.train.SessionRunHook.end"]
    assert len(names) >= 10, names
    for name in names:
        parts = name.split(".")
        if parts[0] == "tf":
            value = tf
        else:
            value = importlib.import_module(".".join(parts[:2]))
            parts = parts[1:]
        for part in parts[1:]:
            assert hasattr(value, part), f"docs/evaluation.md's cycle names {name}, which does not exist"
            value = getattr(value, part)
    for name in ("SessionRunHook.begin", "SessionRunHook.before_run", "SessionRunHook.after_run", "FinalOpsHook"):
        assert name in picture


def _python_blocks(doc):
    with open(os.path.join(REPO_ROOT, doc)) as f:
        return [(line, body) for info, line, body in fenced_blocks(f.read()) if info == "python"]


PYTHON_DOCUMENTS = [doc for doc in DOCUMENTS if _python_blocks(doc)]


@pytest.mark.parametrize("document", PYTHON_DOCUMENTS)
def test_documented_python_runs(document, monkeypatch):
    """Every ```python block of `document`, in page order, in one namespace."""
    monkeypatch.chdir(REPO_ROOT)
    blocks = _python_blocks(document)
    namespace = {"__name__": f"docs_{os.path.basename(document)}"}
    for line, body in blocks:
        exec(compile(body, f"{document}:{line}", "exec"), namespace)  # noqa: S102  The page's own code.


def test_every_relative_link_resolves():
    """A link to a file of the repository (not a URL) names a file that exists, from the page's folder."""
    broken = []
    for doc in DOCUMENTS:
        with open(os.path.join(REPO_ROOT, doc)) as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = os.path.normpath(os.path.join(REPO_ROOT, os.path.dirname(doc), target.split("#")[0]))
            if not os.path.exists(path):
                broken.append(f"{doc}: {target}")
    assert broken == []


def test_the_readme_reading_order_counts_the_files_lines():
    """The reading order's line counts are the files' own (within 10%: they are a reading-time guide)."""
    with open(os.path.join(REPO_ROOT, "README.md")) as f:
        rows = re.findall(r"^\| \d+ \| `([^`]+)` \| (\d+) \|", f.read(), re.MULTILINE)
    assert len(rows) >= 5
    for path, claimed in rows:
        with open(os.path.join(REPO_ROOT, path)) as f:
            actual = len(f.readlines())
        assert abs(actual - int(claimed)) <= max(3, int(claimed) // 10), f"{path} has {actual} lines, not {claimed}"


def test_section_references_name_sections_that_exist():
    """`docs/evaluation.md section N` (or `evaluation.md) section N`) anywhere in the repository
    names a `## N.` heading of that page: renumbering cannot leave a stale pointer."""
    with open(os.path.join(REPO_ROOT, "docs", "evaluation.md")) as f:
        sections = set(re.findall(r"^## (\d+)\. ", f.read(), re.MULTILINE))
    stale = []
    for pattern in ("*.md", "docs/*.md", "configs/*.gin", "*/*.py", "*.py"):
        for path in glob.glob(os.path.join(REPO_ROOT, pattern)):
            with open(path) as f:
                text = f.read()
            for match in re.finditer(r"evaluation\.md\)?,? sections? (\d+)(?: and (\d+))?", text):
                stale += [f"{path}: {match.group(0)}" for n in match.groups() if n and n not in sections]
    assert len(sections) >= 10 and stale == []


def test_figures_outside_the_benchmarks_are_quoted_from_them():
    """A metric value as runs print it (four decimals) on any page but docs/benchmarks.md is one
    that docs/benchmarks.md (or a config's header) states: a new measurement there leaves no stale
    copy elsewhere. Python blocks are left out: their figures are checked by their own asserts."""
    with open(os.path.join(REPO_ROOT, "docs", "benchmarks.md")) as f:
        sources = f.read()
    for path in glob.glob(os.path.join(REPO_ROOT, "configs", "*.gin")):
        with open(path) as f:
            sources += f.read().split("include", 1)[0]
    unsourced = []
    for doc in DOCUMENTS:
        if doc == "docs/benchmarks.md":
            continue
        with open(os.path.join(REPO_ROOT, doc)) as f:
            text = re.sub(r"```python\n.*?```", "", f.read(), flags=re.DOTALL)
        for figure in re.findall(r"(?<![\w.])[+-]?\d\.\d{4}(?![\w.])", text):
            if figure.lstrip("+-") not in sources:
                unsourced.append(f"{doc}: {figure}")
    assert unsourced == []


def test_named_sections_of_a_page_exist():
    """`README's "X"` or `docs/gpu.md "X"` anywhere names a heading of that page (its start):
    a moved section cannot leave a pointer to nowhere."""
    headings = {}
    for doc in DOCUMENTS:
        with open(os.path.join(REPO_ROOT, doc)) as f:
            headings[os.path.basename(doc)] = re.findall(r"^#+ (.+)$", f.read(), re.MULTILINE)
    named, stale = 0, []
    for pattern in ("*.md", "docs/*.md", "configs/*.gin", "*/*.py", "*.py"):
        for path in glob.glob(os.path.join(REPO_ROOT, pattern)):
            with open(path) as f:
                text = f.read()
            if os.path.samefile(path, __file__):  # This test's own examples.
                continue
            for page, title in re.findall(r"\b(README|[a-z_]+\.md)(?:'s)?,? \"([^\"\n]+)\"", text):
                page = "README.md" if page == "README" else page
                if page in headings:
                    named += 1
                    if not any(heading.startswith(title) for heading in headings[page]):
                        stale.append(f"{os.path.relpath(path, REPO_ROOT)}: {page} {title!r}")
    assert named >= 3 and stale == []
