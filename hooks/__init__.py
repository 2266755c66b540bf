"""SessionRunHooks and their builders: they fetch only what they need, only when they need it.

An evaluation hook is added by a *builder*, `(tensors) -> SessionRunHook`, listed in
gin (`EVAL_HOOKS = [@per_class_logging()]`); the model_fn calls each builder with the
EVAL graph's tensors (`features`, `labels`, `predictions`, `loss`, `task`,
`eval_metric_ops`), so every evaluation path runs the hook: train_and_evaluate,
evaluate.py in every mode, and the separate TF_CONFIG evaluator.
"""
