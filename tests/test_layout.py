"""The house's layout, checked: ground apart from composition, no import cycle, and no
global state changed by importing a library module (design.md, "Layout")."""

import ast
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

PACKAGES = ("common", "data", "models", "metrics", "hooks", "core", "tools")
# Who may import whom: the ground imports nothing of the project; the library folders
# import the ground and each other, never core/; core/ composes them; tools/ uses all.
BELOW_CORE = ("data", "models", "metrics", "hooks")


def _modules() -> dict:
    """`{module name: path}` of every project module in PACKAGES."""
    found = {}
    for package in PACKAGES:
        for name in sorted(os.listdir(os.path.join(REPO_ROOT, package))):
            if name.endswith(".py"):
                module = package if name == "__init__.py" else f"{package}.{name[:-3]}"
                found[module] = os.path.join(REPO_ROOT, package, name)
    return found


def _imports(path: str, modules: dict, top_level_only: bool) -> set:
    """The project modules a file imports (at module level only, with `top_level_only`)."""
    tree = ast.parse(open(path).read(), path)
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found.update(name for name in names if name in modules)
    return found


def test_ground_and_library_folders_never_import_composition():
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        package = module.split(".")[0]
        imported = _imports(path, modules, top_level_only=False)
        if package == "common":
            wrong += [(module, name) for name in imported if not name.startswith("common")]
        elif package in BELOW_CORE:
            wrong += [(module, name) for name in imported if name.split(".")[0] in ("core", "tools")]
    assert wrong == []


def test_no_import_cycle_between_project_modules():
    modules = _modules()
    graph = {module: _imports(path, modules, top_level_only=False) - {module} for module, path in modules.items()}
    # A package's __init__ importing its own modules is how packages re-export; not a cycle of the design.
    for module in graph:
        if "." not in module:
            graph[module] = {name for name in graph[module] if not name.startswith(module + ".")}
    state, cycles = {}, []

    def visit(module, stack):
        state[module] = "open"
        for name in sorted(graph[module]):
            if state.get(name) == "open":
                cycles.append(stack[stack.index(name) :] + [name])
            elif name not in state:
                visit(name, stack + [name])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_importing_a_library_module_changes_no_global_state():
    library = [m for m in _modules() if m.split(".")[0] in ("common", *BELOW_CORE)]
    # TensorFlow and the other third-party packages are imported first: what they do on import is theirs.
    script = (
        "import os, sys, warnings, logging\n"
        "import tensorflow as tf, gin, numpy, PIL.Image\n"
        "env, filters = dict(os.environ), list(warnings.filters)\n"
        f"for name in {library!r}: __import__(name)\n"
        "assert dict(os.environ) == env, sorted(set(os.environ.items()) ^ set(env.items()))\n"
        "assert list(warnings.filters) == filters, 'warnings filters changed'\n"
        "assert tf.get_logger().level == logging.NOTSET, tf.get_logger().level\n"
        "assert not tf.config.experimental.is_op_determinism_enabled() if hasattr(tf.config.experimental, "
        "'is_op_determinism_enabled') else True\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_every_package_is_installed_so_tools_import_it_from_any_folder():
    """`python tools/x.py` puts tools/ first on sys.path, not the repository: the project's
    packages reach it through the editable install, which lists them in pyproject.toml."""
    import tomllib

    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    packages = {name for name in os.listdir(REPO_ROOT) if os.path.isfile(os.path.join(REPO_ROOT, name, "__init__.py"))}
    assert packages - {"tests"} <= listed, sorted(packages - {"tests"} - listed)


def test_every_test_module_says_what_it_proves():
    """The README sends readers to the test modules' docstrings for the inventory: each has one."""

    import glob

    missing = []
    for path in sorted(glob.glob(os.path.join(REPO_ROOT, "tests", "test_*.py"))):
        with open(path) as f:
            docstring = ast.get_docstring(ast.parse(f.read()))
        if not docstring or len(docstring.split()) < 5:
            missing.append(os.path.basename(path))
    assert missing == []
