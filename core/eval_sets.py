"""Several evaluation sets in one run (gin's `EVAL_SETS`, docs/evaluation.md section 20).

A run evaluates one set, `VAL_FILES`, into `eval/`, unless `EVAL_SETS` names several:
then each is evaluated at every checkpoint into its own `eval_<set>/`. This module reads
`EVAL_SETS` and builds its sets; `core/evaluation.py` evaluates them (`reporters_by_set`,
`OtherSets`, `follow_trainer`) and `core/experiment.py` wires them into the run.
"""

import os
import re

from common.errors import ConfigError, EvaluationError
from metrics.slices import Slicing


def eval_dir_name(eval_name) -> str:
    """Estimator's eval directory for a name: `eval` or `eval_<name>`."""
    return "eval" if not eval_name else f"eval_{eval_name}"


_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SET_KEYS = ("files", "subset", "slice_by")
# evaluate.py's own eval directories (`eval_<prefix>...`), and tools/compare.py's panels.
_RESERVED_PREFIXES = ("subset_", "worst_", "scales_", "compare_")


def parse_eval_sets(sets) -> dict:
    """`{name: {"files", "subset", "slice_by"}}` of gin's `EVAL_SETS`, in its order.

    Each value is a file pattern (or a list of them), or a dict with `files` and
    optionally `subset` (the set's example indices, as `--subset`) and `slice_by` (its
    slices, instead of `SLICE_BY`). `{}` or None: `{}`, one set (`VAL_FILES`, into `eval/`).

    Raises:
      ConfigError: one line naming the bad set.
    """
    if not sets:
        return {}
    if not isinstance(sets, dict):
        raise ConfigError(f"EVAL_SETS must be a dict {{name: file pattern}}, got {type(sets).__name__}: {sets!r}")
    parsed = {}
    for name, value in sets.items():
        if not isinstance(name, str) or not _SET_NAME.match(name):
            raise ConfigError(f"EVAL_SETS: {name!r} is not a set name (letters, digits, '_', '-', '.'): eval_<name>/")
        if name.startswith(_RESERVED_PREFIXES):
            reserved = ", ".join(_RESERVED_PREFIXES)
            raise ConfigError(f"EVAL_SETS: {name!r} starts like evaluate.py's own eval directories ({reserved})")
        spec = {"files": value} if isinstance(value, (str, list, tuple)) else value
        if not isinstance(spec, dict) or not spec.get("files"):
            raise ConfigError(f"EVAL_SETS[{name!r}]: give a file pattern, or a dict with 'files', got {value!r}")
        unknown = sorted(set(spec) - set(_SET_KEYS))
        if unknown:
            known = ", ".join(_SET_KEYS)
            raise ConfigError(f"EVAL_SETS[{name!r}]: unknown key(s) {', '.join(unknown)} (known: {known})")
        if spec.get("slice_by") is not None and not isinstance(spec["slice_by"], (list, tuple)):
            raise ConfigError(f"EVAL_SETS[{name!r}]: slice_by must be a list of specs, got {spec['slice_by']!r}")
        parsed[name] = {key: spec.get(key) for key in _SET_KEYS}
    return parsed


class EvalSet:
    """One evaluation set of a run: evaluated at every checkpoint into its own directory.

    Attributes:
      name: the set's name (`EVAL_SETS`' key), None for a run's one default set.
      input_fn: its input_fn (`make_input_fn`).
      slicing: `metrics.slices.Slicing`, its slices, or None.
      dir_name: `eval` (no name) or `eval_<name>`.
    """

    def __init__(self, name, input_fn, slicing=None):
        self.name, self.input_fn, self.slicing = name, input_fn, slicing
        self.dir_name = eval_dir_name(name)

    def eval_dir(self, model_dir: str) -> str:
        """Its eval directory in `model_dir`."""
        return os.path.join(model_dir, self.dir_name)

    def __repr__(self):
        return f"EvalSet({self.name!r})"


def build_eval_sets(sets, input_fn_builder, default_input_fn, slicing=None) -> list:
    """The `EvalSet`s of gin's `EVAL_SETS` (`parse_eval_sets`), each input_fn built by
    `input_fn_builder` (gin's `@eval/make_input_fn`) with the set's files and subset, each
    set's `slice_by` over `slicing`'s; no sets: `[EvalSet(None, default_input_fn, slicing)]`."""
    parsed = parse_eval_sets(sets)
    if not parsed:
        return [EvalSet(None, default_input_fn, slicing)]
    if input_fn_builder is None:
        raise ConfigError("EVAL_SETS needs train_and_evaluate.eval_input_fn_builder (configs/base.gin binds it)")
    return [EvalSet(name, input_fn_builder(file_pattern=spec["files"], subset=spec["subset"]),
                    set_slicing(slicing, spec["slice_by"])) for name, spec in parsed.items()]  # fmt: skip


def set_slicing(slicing, slice_by):
    """A set's own `slice_by` with `slicing`'s metadata and minimum size; None: `slicing`."""
    if slice_by is None:
        return slicing
    base = slicing or Slicing()
    return Slicing(slice_by, base.metadata, base.min_size)


def followed_set(eval_sets: list, name=None) -> EvalSet:
    """The set the best checkpoint, the exports and early stopping follow: `name`
    (gin's BEST_SET) or the first; a ConfigError naming the sets when there is none."""
    if name is None:
        return eval_sets[0]
    for eval_set in eval_sets:
        if eval_set.name == name:
            return eval_set
    known = [repr(s.name) for s in eval_sets if s.name]
    if not known:
        raise ConfigError(f"BEST_SET {name!r} needs EVAL_SETS (none is set: the one set is VAL_FILES)")
    raise ConfigError(f"BEST_SET {name!r} is not one of EVAL_SETS (there are: {', '.join(known)})")


def chosen_set(eval_sets, name, eval_name=None):
    """`(name, spec)` of the set `name` of `EVAL_SETS` (None: the first), or `(None, None)`
    without sets; an EvaluationError naming the sets when there is no such set, or when
    evaluate.py's `eval_name` would write into a set's own directory."""
    sets = parse_eval_sets(eval_sets)
    if eval_name is not None and eval_name in sets:
        raise EvaluationError(
            f"--eval_name={eval_name} is the eval directory of evaluation set {eval_name!r}: "
            f"use --eval_set={eval_name}, or another name"
        )
    if not sets:
        if name is not None:
            raise EvaluationError(f"--eval_set={name}: this config has no EVAL_SETS (its one set is VAL_FILES)")
        return None, None
    name = next(iter(sets)) if name is None else name
    if name not in sets:
        raise EvaluationError(f"--eval_set={name}: not one of EVAL_SETS ({', '.join(sets)})")
    return name, sets[name]
