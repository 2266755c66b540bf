"""`Estimator`: `tf.estimator.Estimator` whose evaluations share one EVAL graph and session.

Stock `Estimator.evaluate` builds a new graph (input_fn, model_fn, every metric), starts a
new session, restores the checkpoint, runs the batches and throws it all away, at every
checkpoint. On the synthetic set the graph and the session cost more than the 400
images' batches (bench/train.py: about 1.4 s of fixed cost over a 1.2 s loop). This
subclass builds the EVAL graph at the first evaluation and keeps it, with one session;
each later evaluation of the same input_fn only restores the checkpoint into that
session, zeroes the local variables (every metric accumulator, as stock does) and runs
the batches. Results, event files and hooks' calls are those of the stock path:

- the hooks run through a `MonitoredSession` as in stock `evaluate`, so each evaluation
  calls every hook's `begin`, `after_create_session` (the iterator's initializer hook
  restarts the input there), `before_run`/`after_run` and `end`;
- a hook whose `begin` (or later calls) adds ops needs a graph it can change; the kept
  graph is finalized, so that raises, and the estimator says so once and goes back to
  the stock path (a new graph each evaluation) for good;
- an evaluation that fails drops the kept graph; the next one builds a new one.
  (On that fallback, the hooks before the one that failed have had `begin` called on
  the kept graph; the stock evaluation calls it again.)

Three kinds of graph cannot be kept, and the estimator says so once and uses the stock
path: an input_fn that returns tensors, not a `tf.data.Dataset` (nothing would restart
it), queue runners, and stateful random ops that the evaluation runs (they would go on
drawing where the last evaluation stopped). Random ops inside the Dataset's functions
are fine: the pipeline starts again with the iterator.

Distributed evaluation (`eval_distribute`), a remote `evaluation_master` and an
evaluation with no checkpoint (fresh or warm-started weights) take the stock path;
`keep_eval_graph=False` always does.
"""

import sys

import tensorflow as tf
from tensorflow.python.eager import context
from tensorflow.python.training import evaluation as tf_evaluation
from tensorflow_estimator.python.estimator import estimator as estimator_lib
from tensorflow_estimator.python.estimator import util as estimator_util

# Ops whose state lives in the session: kept, they would draw on where the last evaluation
# stopped, where stock's new session starts from the graph's seed again.
_STATEFUL_RANDOM_OPS = frozenset(
    "RandomUniform RandomUniformInt RandomStandardNormal TruncatedNormal ParameterizedTruncatedNormal "
    "RandomShuffle Multinomial RandomGamma RandomPoisson RandomPoissonV2 RandomCrop".split()
)


class _Marker(tf.compat.v1.train.SessionRunHook):
    """Marks where the caller's hooks go between the input's hooks and the model_fn's."""


class _KeptSession:
    """The kept session, as a `MonitoredSession` gets it: closing it does nothing."""

    def __init__(self, session):
        self._session = session

    def __getattr__(self, name):
        return getattr(self._session, name)

    def close(self):
        pass


class _Restore(tf.compat.v1.train.SessionCreator):
    """Hands out the kept session with `checkpoint_path` restored and the local variables zeroed."""

    def __init__(self, kept, checkpoint_path):
        self._kept, self._checkpoint_path = kept, checkpoint_path

    def create_session(self):
        kept = self._kept
        if kept.session is None:  # The first evaluation: as ChiefSessionCreator does.
            kept.scaffold.finalize()
            # A local session: an evaluation_master takes the stock path.
            kept.session = tf.compat.v1.Session(graph=kept.graph, config=kept.config)
        kept.scaffold.saver.restore(kept.session, self._checkpoint_path)
        kept.session.run(kept.scaffold.local_init_op)
        return _KeptSession(kept.session)


class _KeptGraph:
    """One EVAL graph: what stock `_evaluate_build_graph` and `_evaluate_once` make for it."""

    def __init__(self, estimator, input_fn, checkpoint_path):
        self.input_fn, self.graph, self.session = input_fn, tf.Graph(), None
        self.config = estimator._session_config
        with self.graph.as_default():
            scaffold, update_op, self.eval_dict, hooks = estimator._evaluate_build_graph(
                input_fn, [_Marker()], checkpoint_path
            )
            self.scaffold = scaffold or tf.compat.v1.train.Scaffold()
            marker = next(i for i, hook in enumerate(hooks) if isinstance(hook, _Marker))
            self.input_hooks, self.model_hooks = hooks[:marker], hooks[marker + 1 :]
            # As `_evaluate_once`: the eval step counts batches (for `steps`).
            eval_step = tf_evaluation._get_or_create_eval_step()
            self.eval_ops = [update_op, tf.compat.v1.assign_add(eval_step, 1, use_locking=True)]
            self.eval_step_value = tf_evaluation._get_latest_eval_step_value(self.eval_ops)
        self.unkeepable = self._unkeepable()

    def _unkeepable(self):
        """Why this graph cannot serve a second evaluation as stock would, or None."""
        if not any(isinstance(hook, estimator_util._DatasetInitializerHook) for hook in self.input_hooks):
            return "the input_fn returns no tf.data.Dataset, so nothing restarts its input"
        if self.graph.get_collection(tf.compat.v1.GraphKeys.QUEUE_RUNNERS):
            return "the input uses queue runners"
        fetches = [item for item in tf.nest.flatten([self.eval_ops, self.eval_dict]) if item is not None]
        fetched = [item if isinstance(item, tf.Operation) else item.op for item in fetches]
        seen, todo = set(), list(fetched)
        while todo:  # Every op the evaluation runs: the fetches and their inputs, recursively.
            op = todo.pop()
            if op in seen:
                continue
            seen.add(op)
            if op.type in _STATEFUL_RANDOM_OPS or op.type.startswith("Stateful"):
                return f"the EVAL graph draws random numbers with a stateful op ({op.name}: {op.type})"
            todo.extend(tensor.op for tensor in op.inputs)
            todo.extend(op.control_inputs)
        return None

    def close(self):
        if self.session is not None:
            self.session.close()
            self.session = None


class Estimator(tf.estimator.Estimator):
    """`tf.estimator.Estimator`, with one EVAL graph and session kept across evaluations.

    Args:
      keep_eval_graph: False evaluates exactly as stock Estimator does (a new graph
        and session each time).
      Everything else: as `tf.estimator.Estimator`.
    """

    def __init__(self, *args, keep_eval_graph: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self._keep_eval_graph = keep_eval_graph
        self._kept = None
        # Estimator's __init__ refuses a subclass that overrides its members; `evaluate`
        # calls `self._actual_eval`, so the instance's attribute routes it here.
        self._actual_eval = self._evaluate_kept

    def close_eval_graph(self):
        """Closes the kept EVAL session (the next evaluation builds a new graph)."""
        if self._kept is not None:
            self._kept.close()
            self._kept = None

    def _stock_eval(self, *args):
        return tf.estimator.Estimator._actual_eval(self, *args)

    def _give_up(self, reason, *args):
        """Says why in one line, then evaluates as stock Estimator does, from now on."""
        self.close_eval_graph()
        self._keep_eval_graph = False
        print(
            f"evaluation: {reason}; each evaluation builds its graph again (stock Estimator)",
            file=sys.stderr,
            flush=True,
        )
        return self._stock_eval(*args)

    def _evaluate_kept(self, input_fn, strategy=None, steps=None, hooks=None, checkpoint_path=None, name=None):
        checkpoint_path = checkpoint_path or tf.train.latest_checkpoint(self._model_dir)
        remote = self.config.evaluation_master  # A lost remote session must be recreated: stock does.
        if not self._keep_eval_graph or strategy is not None or not checkpoint_path or remote:
            return self._stock_eval(input_fn, strategy, steps, hooks, checkpoint_path, name)
        caller_hooks = hooks
        hooks = estimator_lib._check_hooks_type(hooks) + self._convert_eval_steps_to_hooks(steps)
        if self._kept is None or self._kept.input_fn is not input_fn:
            self.close_eval_graph()
            with context.graph_mode():
                self._kept = _KeptGraph(self, input_fn, checkpoint_path)
            if self._kept.unkeepable:
                return self._give_up(
                    self._kept.unkeepable, input_fn, strategy, steps, caller_hooks, checkpoint_path, name
                )
        kept = self._kept
        for hook in hooks:
            if isinstance(hook, tf_evaluation._StopAfterNEvalsHook):
                hook._set_evals_completed_tensor(kept.eval_step_value)
        final_ops = tf.compat.v1.train.FinalOpsHook(kept.eval_dict)
        all_hooks = kept.input_hooks + hooks + kept.model_hooks + [final_ops]
        try:
            with context.graph_mode(), kept.graph.as_default():
                with tf.compat.v1.train.MonitoredSession(_Restore(kept, checkpoint_path), all_hooks) as session:
                    while not session.should_stop():
                        session.run(kept.eval_ops)
                kept.graph.finalize()  # MonitoredSession unfinalizes a graph it did not find finalized.
                results = final_ops.final_ops_values
                step = results[tf.compat.v1.GraphKeys.GLOBAL_STEP]
                output_dir = self.eval_dir(name)
                estimator_lib._write_dict_to_summary(output_dir, results, step)
                estimator_lib._write_checkpoint_path_to_summary(output_dir, checkpoint_path, step)
                return results
        except RuntimeError as error:
            if "Graph is finalized" not in str(error):
                self.close_eval_graph()
                raise
            reason = "a hook adds ops to the EVAL graph after its first evaluation"
            return self._give_up(reason, input_fn, strategy, steps, caller_hooks, checkpoint_path, name)
        except BaseException:
            self.close_eval_graph()
            raise
