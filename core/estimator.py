"""`Estimator`: `tf.estimator.Estimator` whose evaluations share one EVAL graph and session.

Why. Stock `Estimator.evaluate` builds a new graph (input_fn, model_fn, every metric),
starts a new session, restores the checkpoint, runs the batches and throws it all away, at
every checkpoint. On the synthetic set the graph and the session cost more than the 400
images' batches (bench/train.py: about 1.4 s of fixed cost over a 1.2 s loop).

What. This subclass builds the EVAL graph at the first evaluation and keeps it, with one
session; each later evaluation of the same input_fn restores the checkpoint into that
session and runs the batches. A run with several evaluation sets (`max_eval_graphs`, one
per set) keeps one graph per input_fn; past that many, the least recently used is closed.
The parts are stock's own code or a copy of it, step by step: the graph is built by stock
`_evaluate_build_graph`; the session is prepared by a stock `SessionManager` (the restore,
`local_init_op` with the scaffold's `local_init_feed_dict`, which zeroes every metric
accumulator, the ready checks), only restoring into the kept
session instead of a new one; the loop, the hooks' calls through a `MonitoredSession`
(`begin`, `after_create_session`, ..., `end`, every evaluation), the log lines ("Starting
evaluation", "Finished evaluation"), the returned dict and the event files are those of
stock `_evaluate_once` and `_evaluate_run`. Hooks get the kept session itself, a real
`tf.compat.v1.Session` whose `close()` waits for `close_eval_graph()`. An evaluation that
fails drops the kept graph; the next one builds a new one.

`keep_eval_graph=False` (gin: `KEEP_EVAL_GRAPH = False`) is stock exactly: `evaluate` is
then `tf.estimator.Estimator`'s, untouched. Stock is also what always runs for a
distributed evaluation (`eval_distribute`), a remote `evaluation_master`, an evaluation with
no checkpoint (fresh or warm-started weights), and when the installed tensorflow-estimator
is not 2.15.0 or lacks a private symbol listed below (one line at import says which:
falling back rather than failing the import, because stock evaluation is right on any
version, and an ImportError would stop training too, for the sake of a speed-up).

Where a kept graph differs from stock, and what this class does about it. "Stock from then
on" means: one line on stderr says why, the kept graph is dropped, and this evaluation (if
not yet run) and every later one build their graph as stock does.

1. Stateful random ops (dropout left on in EVAL, `tf.random.uniform`, `tf.image.random_*`,
   a `tf.random.Generator`) keep their state in the session: kept, they would go on
   drawing where the last evaluation stopped. Detected at run time: every run of the kept
   session (the batches, the metric values, a hook's fetches or its own `session.run`) is
   walked back through inputs, control inputs and the bodies of the functions ops call
   (`tf.cond`, `tf.while_loop`, `tf.map_fn`, `tf.function`). A run that reaches such an
   op marks the graph; that evaluation's numbers are stock's (the op draws its first
   numbers in this session, as in a new one), and after it, stock from then on. Run
   time, rather than a walk of the whole graph up front, because hooks choose their
   fetches as they run, and a whole-graph walk would count the random initializers of
   global variables, which a restore never runs. Not walked: the functions of tf.data ops (the pipeline starts
   again from its iterator, as in stock), and random numbers drawn in Python
   (`tf.py_function`, numpy), which no graph walk sees.
2. An input_fn that returns tensors rather than a `tf.data.Dataset` (nothing would restart
   them), and queue runners: seen in the first graph built, which then runs stock's own
   `_evaluate_run` (so input_fn and model_fn run once, as in stock); stock from then on.
3. The model_fn's `evaluation_hooks` are the same objects at every evaluation, where stock
   makes new ones: each evaluation calls every hook method again from `begin`, but what a
   hook made in its `__init__` stays. Detected: a hook holding a `FileWriter` closed since
   (`tf.compat.v1.summary.FileWriterCache.clear()` between evaluations: a `SummarySaverHook`
   would write to it and its summaries would be dropped); stock from then on. A hook that
   adds ops to the graph in `begin` fails on the finalized kept graph: stock from then on
   (the hooks before it have had `begin` called on the kept graph; stock calls it again).
4. The Python side of input_fn and model_fn runs once, at the first evaluation: whatever
   they read in Python while building the graph (a file, a global, a numpy array turned
   into a constant) is frozen at its first value, where stock reads it again at every
   evaluation. This cannot be detected: when such data changes between evaluations, use
   `keep_eval_graph=False`, or pass another input_fn object (which builds a new graph).
5. The kept graph and session hold their memory (variables, buffers, the input pipeline)
   between evaluations, so during training too: `close_eval_graph()` frees them.
6. Smaller: a hook's `session.close()` does not close the kept session, and a session error
   that `MonitoredSession` recovers from (`AbortedError`) restores into the same session.

Private symbols used (checked when this module is imported, with the version):
tensorflow_estimator.python.estimator.estimator: `Estimator._actual_eval` (what
`evaluate` calls; an instance attribute routes it here), `Estimator._evaluate_build_graph`,
`Estimator._evaluate_run`, `Estimator._convert_eval_steps_to_hooks`, `_check_hooks_type`,
`_write_dict_to_summary`, `_write_checkpoint_path_to_summary`;
tensorflow_estimator.python.estimator.util: `_DatasetInitializerHook`;
tensorflow.python.training.evaluation: `_get_or_create_eval_step`,
`_get_latest_eval_step_value`, `_StopAfterNEvalsHook._set_evals_completed_tensor`;
tensorflow.python.training.session_manager: `SessionManager._restore_checkpoint`
(overridden), `_restore_checkpoint_and_maybe_run_saved_model_initializers`;
tensorflow.python.framework.op_def_registry: `get`; `FileWriter._closed` (set by `close()`).
"""

import functools
import importlib.metadata
import sys
import time

import tensorflow as tf
from tensorflow.python.framework import op_def_registry
from tensorflow.python.training import evaluation as tf_evaluation
from tensorflow.python.training import session_manager as tf_session_manager
from tensorflow_estimator.python.estimator import estimator as estimator_lib
from tensorflow_estimator.python.estimator import util as estimator_util

PINNED_VERSION = "2.15.0"  # tensorflow-estimator: the version the kept path was checked against.

_PRIVATE_SYMBOLS = (
    (estimator_lib, "Estimator._actual_eval"),
    (estimator_lib, "Estimator._evaluate_build_graph"),
    (estimator_lib, "Estimator._evaluate_run"),
    (estimator_lib, "Estimator._convert_eval_steps_to_hooks"),
    (estimator_lib, "_check_hooks_type"),
    (estimator_lib, "_write_dict_to_summary"),
    (estimator_lib, "_write_checkpoint_path_to_summary"),
    (estimator_util, "_DatasetInitializerHook"),
    (tf_evaluation, "_get_or_create_eval_step"),
    (tf_evaluation, "_get_latest_eval_step_value"),
    (tf_evaluation, "_StopAfterNEvalsHook._set_evals_completed_tensor"),
    (tf_session_manager, "SessionManager._restore_checkpoint"),
    (tf_session_manager, "_restore_checkpoint_and_maybe_run_saved_model_initializers"),
    (op_def_registry, "get"),
)


def _unsupported(version=None):
    """Why the kept path cannot run on the installed libraries (version, missing symbols), or None."""
    if version is None:
        try:
            version = importlib.metadata.version("tensorflow-estimator")
        except importlib.metadata.PackageNotFoundError:  # Installed without its metadata.
            version = "of unknown version"
    missing = []
    for module, dotted in _PRIVATE_SYMBOLS:
        value = module
        for name in dotted.split("."):
            value = getattr(value, name, None)
        if value is None:
            missing.append(f"{module.__name__}.{dotted}")
    if "_closed" not in tf.compat.v1.summary.FileWriter.close.__code__.co_names:
        missing.append("tf.compat.v1.summary.FileWriter._closed")
    if version != PINNED_VERSION or missing:
        found = f"tensorflow-estimator {version}" + (f" lacks {', '.join(missing)}" if missing else "")
        return f"{found} (the kept EVAL graph needs {PINNED_VERSION})"
    return None


UNSUPPORTED = _unsupported()
if UNSUPPORTED:
    print(f"core.estimator: {UNSUPPORTED}; every evaluation builds its graph (stock Estimator)", file=sys.stderr)


class _Marker(tf.compat.v1.train.SessionRunHook):
    """Marks where the caller's hooks go between the input's hooks and the model_fn's."""


@functools.cache
def _draws_random_numbers(op_type):
    """True for an op type whose kernel keeps random state in the session (conservative)."""
    op_def = op_def_registry.get(op_type)  # None for a call of a graph function by name.
    return "Dataset" not in op_type and (  # tf.data's seeds restart with the iterator.
        (op_type.startswith("Stateful") and op_type != "StatefulPartitionedCall")  # tf.random.Generator
        or op_type == "NonDeterministicInts"
        # Every legacy stateful random kernel (RandomUniform, TruncatedNormal, Multinomial,
        # RandomShuffle, SampleDistortedBoundingBox, candidate samplers, ...) has a seed2 attr.
        or (op_def is not None and any(attr.name == "seed2" for attr in op_def.attr))
    )


def _called_functions(op_type, attrs):
    """The names of the graph functions a node calls: its func attrs, or its type itself."""
    if "Dataset" in op_type:  # A tf.data function runs in the input pipeline.
        return []
    names = [op_type] if op_def_registry.get(op_type) is None else []
    for value in attrs.values():
        if value.HasField("func"):
            names.append(value.func.name)
        names.extend(func.name for func in value.list.func)
    return names


def _fetch_leaves(fetches):
    """Every tensor, op or name in a `Session.run` fetch structure (dicts keyed by hooks included)."""
    if isinstance(fetches, dict):
        for value in fetches.values():
            yield from _fetch_leaves(value)
    elif isinstance(fetches, (list, tuple)):
        for value in fetches:
            yield from _fetch_leaves(value)
    elif hasattr(fetches, "__attrs_attrs__"):
        for field in fetches.__attrs_attrs__:
            yield from _fetch_leaves(getattr(fetches, field.name))
    elif fetches is not None:
        yield from tf.nest.flatten(fetches, expand_composites=True)


class _RandomOpFinder:
    """Notes the first stateful random op that a run of the kept session can reach."""

    def __init__(self, graph):
        self.graph, self.found = graph, None
        self._seen = set()  # Ops walked: none of them, nor anything upstream, is random.
        self._functions, self._seen_functions = None, set()

    def check(self, fetches):
        if self.found:
            return
        todo = []
        for leaf in _fetch_leaves(fetches):
            if isinstance(leaf, (str, bytes)):
                leaf = self.graph.as_graph_element(leaf)
            op = leaf if isinstance(leaf, tf.Operation) else getattr(leaf, "op", None)
            if isinstance(op, tf.Operation):
                todo.append(op)
        while todo and not self.found:
            op = todo.pop()
            if op in self._seen:
                continue
            self._seen.add(op)
            if _draws_random_numbers(op.type):
                self.found = f"{op.name}: {op.type}"
                break
            op_def = op_def_registry.get(op.type)
            if op_def is None or any(attr.type in ("func", "list(func)") for attr in op_def.attr):
                for name in _called_functions(op.type, op.node_def.attr):
                    self._check_function(name, op.name)
            todo.extend(tensor.op for tensor in op.inputs)
            todo.extend(op.control_inputs)

    def _check_function(self, name, caller):
        if self.found or name in self._seen_functions:
            return
        self._seen_functions.add(name)
        if self._functions is None or name not in self._functions:  # Read once, again if it grew.
            self._functions = {f.signature.name: f for f in self.graph.as_graph_def().library.function}
        if name not in self._functions:
            self.found = f"{caller} calls {name}, a function not in the graph's library"
            return
        for node in self._functions[name].node_def:
            if _draws_random_numbers(node.op):
                self.found = f"{node.name} in function {name} called by {caller}: {node.op}"
                return
            for called in _called_functions(node.op, node.attr):
                self._check_function(called, caller)


class _KeptSession(tf.compat.v1.Session):
    """The kept session: a real `Session` for the hooks, which a `MonitoredSession` cannot close
    (`close_for_good` does) and which shows every run's fetches to a `_RandomOpFinder`."""

    def __init__(self, finder, graph, config):
        self._closable, self._finder = False, finder
        super().__init__(graph=graph, config=config)

    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        self._finder.check(fetches)
        return super().run(fetches, feed_dict, options, run_metadata)

    def partial_run_setup(self, fetches, feeds=None):
        self._finder.check(fetches)
        return super().partial_run_setup(fetches, feeds)

    def make_callable(self, fetches, feed_list=None, accept_options=False):
        self._finder.check(fetches)
        return super().make_callable(fetches, feed_list, accept_options)

    def close(self):
        if self._closable:
            super().close()

    def close_for_good(self):
        self._closable = True
        self.close()

    def __del__(self):
        self._closable = True
        super().__del__()


class _KeptSessionManager(tf.compat.v1.train.SessionManager):
    """Stock `SessionManager`, restoring into the kept session rather than a new one: what
    `prepare_session` does after the restore (the local init op with its feed dict, the ready
    checks) is stock's."""

    def __init__(self, kept):
        scaffold = kept.scaffold
        super().__init__(
            local_init_op=scaffold.local_init_op,
            ready_op=scaffold.ready_op,
            ready_for_local_init_op=scaffold.ready_for_local_init_op,
            graph=kept.graph,
            local_init_feed_dict=scaffold.local_init_feed_dict,
        )
        self._kept = kept

    def _restore_checkpoint(
        self,
        master,
        saver=None,
        checkpoint_dir=None,
        checkpoint_filename_with_path=None,
        wait_for_checkpoint=False,
        max_wait_secs=7200,
        config=None,
    ):
        self._target = master  # As stock; always "" here (a remote evaluation_master takes the stock path).
        kept = self._kept
        if kept.session is None:
            kept.session = _KeptSession(kept.random_ops, kept.graph, config)
        tf_session_manager._restore_checkpoint_and_maybe_run_saved_model_initializers(
            kept.session, saver, checkpoint_filename_with_path
        )
        return kept.session, True


class _Restore(tf.compat.v1.train.SessionCreator):
    """`ChiefSessionCreator`, with the kept session: `checkpoint_path` restored into it, then
    the local variables initialized (every metric accumulator and the eval step zeroed)."""

    def __init__(self, kept, checkpoint_path):
        self._kept, self._checkpoint_path = kept, checkpoint_path

    def create_session(self):
        scaffold = self._kept.scaffold
        scaffold.finalize()  # As ChiefSessionCreator: builds the init ops once, logs "Graph was finalized."
        return _KeptSessionManager(self._kept).prepare_session(
            "",
            saver=scaffold.saver,
            checkpoint_filename_with_path=self._checkpoint_path,
            config=self._kept.config,
            init_op=scaffold.init_op,
            init_feed_dict=scaffold.init_feed_dict,
            init_fn=scaffold.init_fn,
        )


class _KeptGraph:
    """One EVAL graph: what stock `_evaluate_build_graph` and `_evaluate_once` make for it."""

    def __init__(self, estimator, input_fn, checkpoint_path):
        self.input_fn, self.graph, self.session = input_fn, tf.Graph(), None
        self.config = estimator.config.session_config
        with self.graph.as_default():
            scaffold, self.update_op, self.eval_dict, hooks = estimator._evaluate_build_graph(
                input_fn, [_Marker()], checkpoint_path
            )
        self.stock_scaffold = scaffold  # As built, for stock `_evaluate_run` if the graph cannot be kept.
        self.scaffold = scaffold or tf.compat.v1.train.Scaffold()
        marker = next(i for i, hook in enumerate(hooks) if isinstance(hook, _Marker))
        self.input_hooks, self.model_hooks = hooks[:marker], hooks[marker + 1 :]
        self.random_ops = _RandomOpFinder(self.graph)
        self.unkeepable = self._unkeepable()
        if self.unkeepable:
            return
        with self.graph.as_default():  # As `_evaluate_once`: the eval step counts batches (for `steps`).
            eval_step = tf_evaluation._get_or_create_eval_step()
            self.eval_ops = [self.update_op, tf.compat.v1.assign_add(eval_step, 1, use_locking=True)]
            self.eval_step_value = tf_evaluation._get_latest_eval_step_value(self.eval_ops)

    def _unkeepable(self):
        """Why this graph cannot serve a second evaluation as stock would, seen before its first, or None."""
        if not any(isinstance(hook, estimator_util._DatasetInitializerHook) for hook in self.input_hooks):
            return "the input_fn returns no tf.data.Dataset, so nothing restarts its input"
        if self.graph.get_collection(tf.compat.v1.GraphKeys.QUEUE_RUNNERS):
            return "the input uses queue runners"
        return None

    def stale_hook(self):
        """Why the model_fn's hooks, reused, would not do what new ones would, or None."""
        for hook in self.model_hooks:
            for name, value in getattr(hook, "__dict__", {}).items():
                if isinstance(value, tf.compat.v1.summary.FileWriter) and value._closed:
                    return (
                        f"the model_fn's {type(hook).__name__} holds a closed FileWriter ({name}: "
                        "FileWriterCache.clear()?) where a new hook would get an open one"
                    )
        return None

    def close(self):
        if self.session is not None:
            self.session.close_for_good()
            self.session = None


class Estimator(tf.estimator.Estimator):
    """`tf.estimator.Estimator`, with one EVAL graph and session kept across evaluations.

    Kept, the Python side of input_fn and model_fn runs once (what they read in Python is
    frozen at the first evaluation) and the model_fn's evaluation_hooks are the same objects
    at every evaluation; stateful random ops, hooks that add ops or hold a closed FileWriter,
    and inputs that cannot restart send it back to stock with one line. The module docstring
    lists every difference from stock.

    Args:
      keep_eval_graph: False evaluates exactly as stock Estimator does (a new graph and
        session each time), as does an installed tensorflow-estimator other than 2.15.0.
      max_eval_graphs: how many input_fns' graphs are kept (a run's evaluation sets).
      Everything else: as `tf.estimator.Estimator`.
    """

    def __init__(self, *args, keep_eval_graph: bool = True, max_eval_graphs: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self._keep_eval_graph = keep_eval_graph and not UNSUPPORTED
        self._kept_graphs = []  # One `_KeptGraph` per input_fn, the most recently used last.
        self._max_eval_graphs = max(1, int(max_eval_graphs))
        if self._keep_eval_graph:
            # Estimator's __init__ refuses a subclass that overrides its members; `evaluate`
            # calls `self._actual_eval`, so the instance's attribute routes it here.
            self._actual_eval = self._evaluate_kept

    def close_eval_graph(self):
        """Closes every kept EVAL session and frees its graph (the next evaluation builds a new one)."""
        while self._kept_graphs:
            self._kept_graphs.pop().close()

    @property
    def _kept(self):
        """The most recently used kept graph, or None."""
        return self._kept_graphs[-1] if self._kept_graphs else None

    def _drop(self, kept):
        if kept in self._kept_graphs:
            self._kept_graphs.remove(kept)
        kept.close()

    def _stock_eval(self, *args):
        return tf.estimator.Estimator._actual_eval(self, *args)

    def _back_to_stock(self, reason):
        """Says why in one line; from now on every evaluation is stock Estimator's."""
        self.close_eval_graph()
        self._keep_eval_graph = False
        print(
            f"evaluation: {reason}; each evaluation builds its graph again (stock Estimator)",
            file=sys.stderr,
            flush=True,
        )

    def _evaluate_kept(self, input_fn, strategy=None, steps=None, hooks=None, checkpoint_path=None, name=None):
        stock_args = (input_fn, strategy, steps, hooks, checkpoint_path, name)
        checkpoint_path = checkpoint_path or tf.train.latest_checkpoint(self.model_dir)
        remote = self.config.evaluation_master  # A lost remote session must be recreated: stock does.
        if not self._keep_eval_graph or strategy is not None or not checkpoint_path or remote:
            return self._stock_eval(*stock_args)
        hooks = estimator_lib._check_hooks_type(hooks) + self._convert_eval_steps_to_hooks(steps)
        kept = next((kept for kept in self._kept_graphs if kept.input_fn is input_fn), None)
        stale = kept and kept.stale_hook()
        if stale:
            self._back_to_stock(stale)
            return self._stock_eval(*stock_args)
        if kept is None:
            while len(self._kept_graphs) >= self._max_eval_graphs:  # Another input_fn: the oldest goes.
                self._drop(self._kept_graphs[0])
            kept = _KeptGraph(self, input_fn, checkpoint_path)
            if kept.unkeepable:  # Stock's evaluation, on the graph just built as stock builds it.
                self._back_to_stock(kept.unkeepable)
                with kept.graph.as_default():
                    return self._evaluate_run(
                        checkpoint_path=checkpoint_path,
                        scaffold=kept.stock_scaffold,
                        update_op=kept.update_op,
                        eval_dict=kept.eval_dict,
                        all_hooks=kept.input_hooks + hooks + kept.model_hooks,
                        output_dir=self.eval_dir(name),
                    )
        else:
            self._kept_graphs.remove(kept)
        self._kept_graphs.append(kept)
        try:
            results = self._run_kept(kept, hooks, checkpoint_path, name)
        except RuntimeError as error:
            if "Graph is finalized" not in str(error):
                self._drop(kept)
                raise
            self._back_to_stock("a hook adds ops to the EVAL graph after its first evaluation")
            return self._stock_eval(*stock_args)
        except BaseException:
            self._drop(kept)
            raise
        found = kept.random_ops.found
        if found:  # This evaluation drew its numbers first, as stock's does: the next one could not.
            self._back_to_stock(f"the EVAL graph draws random numbers with a stateful op ({found})")
        return results

    def _run_kept(self, kept, hooks, checkpoint_path, name):
        """Stock `_evaluate_once` and `_evaluate_run`, on a kept graph and its session."""
        for hook in hooks:
            if isinstance(hook, tf_evaluation._StopAfterNEvalsHook):
                hook._set_evals_completed_tensor(kept.eval_step_value)
        final_ops = tf.compat.v1.train.FinalOpsHook(kept.eval_dict)
        all_hooks = kept.input_hooks + hooks + kept.model_hooks + [final_ops]
        tf.compat.v1.logging.info("Starting evaluation at " + time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()))
        start = time.time()
        with kept.graph.as_default():  # The default graph, as in stock: a new FileWriter writes it.
            with tf.compat.v1.train.MonitoredSession(_Restore(kept, checkpoint_path), all_hooks) as session:
                while not session.should_stop():
                    session.run(kept.eval_ops)
            kept.graph.finalize()  # MonitoredSession unfinalizes a graph it did not find finalized.
            tf.compat.v1.logging.info(f"Inference Time : {time.time() - start:0.5f}s")
            tf.compat.v1.logging.info("Finished evaluation at " + time.strftime("%Y-%m-%d-%H:%M:%S", time.localtime()))
            results = final_ops.final_ops_values
            step = results[tf.compat.v1.GraphKeys.GLOBAL_STEP]
            output_dir = self.eval_dir(name)
            estimator_lib._write_dict_to_summary(output_dir, results, step)
            estimator_lib._write_checkpoint_path_to_summary(output_dir, checkpoint_path, step)
        return results
