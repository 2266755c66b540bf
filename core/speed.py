"""How fast a configured training runs here: the measure behind tools/build_dataset.py's step
budget and the benchmarks under bench/.

`configured` builds what train.py builds from gin files (the model_fn and the two
input_fns); `training_rate` trains with the template's Estimator and times the steps
after a warm-up (graph building, the first batches and kernel selection excluded).
"""

import time

import gin


class Rate:
    """Examples/s between the `warmup`-th and the `warmup + steps`-th step: `step()` after each one.

    `cores` is this process's CPU seconds (every thread) over the wall seconds of those steps:
    on a machine whose share of its cores varies, examples per CPU second (`rate / cores`)
    is the steadier comparison.
    """

    def __init__(self, warmup: int, steps: int, batch: int):
        self.warmup, self.steps, self.batch = warmup, steps, batch
        self.count, self.started, self.rate, self.cores = 0, None, None, None

    def step(self) -> bool:
        """Counts one step; True once the measured steps are done."""
        self.count += 1
        if self.count == self.warmup:
            self.started, self.cpu_started = time.perf_counter(), time.process_time()
        elif self.count == self.warmup + self.steps:
            seconds = time.perf_counter() - self.started
            self.rate = self.steps * self.batch / seconds
            self.cores = (time.process_time() - self.cpu_started) / seconds
            return True
        return False


def configured(gin_files, gin_params=()):
    """`(model_fn, train input_fn, eval input_fn)` as train.py builds them from these gin files."""
    from core import configurables

    gin.clear_config()
    configurables.parse_gin(gin_files, gin_params)
    return tuple(
        gin.query_parameter(f"train_and_evaluate.{name}").scoped_configurable_fn()
        for name in ("model_fn", "train_input_fn", "eval_input_fn")
    )


def training_rate(
    model_fn, input_fn, model_dir: str, warmup: int, steps: int, batch: int, session_config=None, cores=None, hooks=()
):
    """`(examples/s, estimator)`: `warmup + steps + 1` training steps into `model_dir`, no checkpoint
    saved, `hooks` run too. The CPU cores used in the measured steps (`Rate.cores`) are appended
    to the list `cores`."""
    import tensorflow as tf

    from core.estimator import Estimator  # Evaluates as the template does: one EVAL graph, kept.

    rate = Rate(warmup, steps, batch)

    class Hook(tf.compat.v1.train.SessionRunHook):
        def after_run(self, context, values):
            if rate.step():
                context.request_stop()

    config = tf.estimator.RunConfig(
        model_dir=model_dir,
        tf_random_seed=0,
        save_checkpoints_steps=10**9,
        save_checkpoints_secs=None,
        log_step_count_steps=None,
        session_config=session_config,
    )
    estimator = Estimator(model_fn, config=config)
    estimator.train(input_fn, hooks=[Hook(), *hooks], max_steps=warmup + steps + 1)
    if cores is not None:
        cores.append(rate.cores)
    return rate.rate, estimator
