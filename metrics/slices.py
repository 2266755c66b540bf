"""Sliced metrics: an evaluation's metrics on subsets of its examples, exact, with intervals.

Every evaluation keeps each example's sufficient statistics (`metrics/bootstrap.py`), so a
slice's metrics are the task's `from_sums` of the sums over the slice's examples: the same
numbers an evaluation of those examples alone would give, and the same bootstrap intervals,
with no model and no second pass over the data.

A slice spec names a way to group the examples (`--slice_by`, gin `slicing.slice_by`):

- `size`: the image's longer side, in buckets `<128`, `128-255`, `256-511`, `512-1023`,
  `>=1024` pixels (the size of the stored image, before any resize);
- `class`: one slice per class, the examples whose labels contain it (they overlap);
- `area` (dense tasks): per class, the share of the example's labelled pixels it covers,
  `<1%`, `1-10%`, `>10%` (examples without the class are in none of its slices);
- `file:REGEX`: the first group of REGEX searched in the file name (the whole match if it
  has no group), e.g. `file:^(\\w+?)_` for a camera or city prefix; a file it does not
  match goes to `file:(no match)`, never dropped;
- `COLUMN`: a column of the metadata CSV (`--slice_metadata`), whose first column (or one
  named `file`) holds file names; every evaluated file must have a row;
- `A*B`: every pair of a slice of A and one of B (a `file:` spec goes last, its regex runs
  to the end).

A slice with fewer than `min_size` examples is reported as too small, never as a number.
"""

import csv
import os
import re

import numpy as np

from common.errors import ConfigError, EvaluationError
from metrics import bootstrap

MIN_SIZE = 20
SIZE_EDGES = (128, 256, 512, 1024)
AREA_EDGES = (0.01, 0.10)
NO_MATCH = "(no match)"
CROSS = "*"
_AGAIN = (
    " (kept since 2026-12-05: evaluate the checkpoint again; records without a .index.json need"
    " tools/index_records.py first)"
)


class Slicing:
    """What to slice by (gin: `slicing.slice_by`, `slicing.metadata`, `slicing.min_size`).

    Args:
      slice_by: slice specs (the module's list); empty: no slices.
      metadata: a CSV of per-file columns for column specs, or None.
      min_size: slices with fewer examples are reported as too small.
    """

    def __init__(self, slice_by=(), metadata: str = None, min_size: int = MIN_SIZE):
        self.slice_by = [spec for spec in slice_by if spec]
        self.metadata = metadata
        self.min_size = int(min_size)
        self._rows = None
        if self.min_size < 1:
            raise ConfigError(f"slicing.min_size must be at least 1, got {min_size}")
        for spec in self.slice_by:
            parts(spec)

    def __bool__(self):
        return bool(self.slice_by)

    def metadata_rows(self):
        """`read_metadata(self.metadata)`, read once (at `check`, before training), or None."""
        if self.metadata and self._rows is None:
            self._rows = read_metadata(self.metadata)
        return self._rows

    def check(self, examples, task):
        """Fails now, before any training, on what would fail at the first evaluation: a
        file regex or metadata column for examples of unknown names, a metadata CSV without
        a row for an evaluated file, class or area slices for a task without classes.

        Args:
          examples: the evaluation split's `(file name, height, width)` by index, or None.
          task: the task (`models/task.py`).
        """
        names = [name for name, _, _ in examples] if examples else None
        sizes = np.asarray([size for _, *size in examples]).reshape(-1, 2) if examples else None
        has_classes = task.label_counts({"confusion": np.zeros((0, len(task.class_names) ** 2))}) is not None
        known = Examples(names, sizes, None, task.class_names, task.dense_labels, self.metadata_rows(),
                         "the evaluation split")  # fmt: skip
        for spec in self.slice_by:
            for part in parts(spec):
                if part in ("class", "area"):
                    if not has_classes:
                        raise ConfigError(f"slice {part!r}: the {task.name} task has no classes")
                    if part == "area" and not task.dense_labels:
                        raise ConfigError(f"slice 'area': the {task.name} task's labels are not per pixel")
                else:
                    known.groups(part)


def parts(spec: str) -> list:
    """The specs a cross `A*B` is made of (a `file:` spec takes the rest of the string)."""
    out, rest = [], spec.strip()
    while rest:
        if rest.startswith("file:"):
            regex = rest[len("file:") :]
            try:
                re.compile(regex)
            except re.error as error:
                raise ConfigError(f"slice spec {spec!r}: bad regular expression {regex!r} ({error})") from None
            out.append(rest)
            break
        head, _, rest = rest.partition(CROSS)
        if not head.strip():
            raise ConfigError(f"slice spec {spec!r}: empty part")
        out.append(head.strip())
    if not out or len(out) > 2:
        raise ConfigError(f"slice spec {spec!r}: one spec or a cross of two (A*B)")
    return out


def read_metadata(path: str) -> dict:
    """`{file name: {column: value}}` from a CSV whose first column (or `file`) names files."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"slice metadata {path}: {error.strerror or error}") from None
    if len(rows) < 2:
        raise ConfigError(f"slice metadata {path}: needs a header row and one row per file")
    header = [name.strip() for name in rows[0]]
    key = header.index("file") if "file" in header else 0
    table = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise ConfigError(f"slice metadata {path}, line {number}: {len(row)} cells, the header has {len(header)}")
        name = row[key].strip()
        if name in table:
            raise ConfigError(f"slice metadata {path}, line {number}: {name!r} has a second row")
        table[name] = {column: cell.strip() for column, cell in zip(header, row)}
    return table


class Examples:
    """What slices are made from: each evaluated example's file name, image size and
    labelled pixels of each class, in the statistics' row order.

    Args:
      filenames: N names, or None.
      image_sizes: int [N, 2] (height, width), or None.
      label_counts: [N, C] each class's labelled pixels (examples), or None (no classes).
      class_names: C names.
      dense: whether labels are per pixel (area slices).
      metadata: `read_metadata`'s table, or None.
    """

    def __init__(
        self, filenames, image_sizes, label_counts, class_names, dense, metadata=None, source="the evaluation"
    ):
        self.filenames, self.image_sizes, self.label_counts = filenames, image_sizes, label_counts
        self.class_names, self.dense, self.metadata, self.source = list(class_names), dense, metadata, source

    def _need(self, what, value, spec):
        if value is None:
            raise EvaluationError(f"slice {spec!r}: {self.source} has no {what}")
        return value

    def groups(self, spec: str) -> dict:
        """`{slice name: bool [N]}` of one (uncrossed) spec."""
        if spec == "size":
            sizes = np.asarray(self._need("image sizes" + _AGAIN, self.image_sizes, spec))
            side = sizes.max(axis=1)
            edges = (0, *SIZE_EDGES, np.inf)
            names = [f"<{SIZE_EDGES[0]}"] + [f"{a}-{b - 1}" for a, b in zip(SIZE_EDGES, SIZE_EDGES[1:])]
            names.append(f">={SIZE_EDGES[-1]}")
            return {f"size:{name}": (side >= low) & (side < high) for name, low, high in zip(names, edges, edges[1:])}
        if spec in ("class", "area"):
            counts = np.asarray(self._need("classes", self.label_counts, spec), np.float64)
            if spec == "class":
                return {f"class:{name}": counts[:, k] > 0 for k, name in enumerate(self.class_names)}
            if not self.dense:
                raise EvaluationError("slice 'area': the task's labels are not per pixel")
            share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
            out = {}
            for k, name in enumerate(self.class_names):
                present = counts[:, k] > 0
                out[f"area:{name}:<1%"] = present & (share[:, k] < AREA_EDGES[0])
                out[f"area:{name}:1-10%"] = present & (share[:, k] >= AREA_EDGES[0]) & (share[:, k] <= AREA_EDGES[1])
                out[f"area:{name}:>10%"] = present & (share[:, k] > AREA_EDGES[1])
            return out
        names = self._need("file names" + _AGAIN, self.filenames, spec)
        if spec.startswith("file:"):
            regex = re.compile(spec[len("file:") :])
            values = []
            for name in names:
                found = regex.search(os.path.basename(name))
                values.append(NO_MATCH if found is None else (found.group(1) if regex.groups else found.group(0)))
            return _by_value("file", values)
        if self.metadata is None:
            raise ConfigError(f"slice {spec!r}: not size, class, area or file:REGEX, and no --slice_metadata CSV given")
        columns = next(iter(self.metadata.values()))
        if spec not in columns:
            raise ConfigError(f"slice {spec!r}: the metadata CSV has no such column (it has {', '.join(columns)})")
        missing = [name for name in names if name not in self.metadata and os.path.basename(name) not in self.metadata]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise EvaluationError(f"slice {spec!r}: the metadata CSV has no row for {missing[0]!r}{more}")
        rows = [self.metadata.get(name) or self.metadata[os.path.basename(name)] for name in names]
        return _by_value(spec, [row[spec] for row in rows])

    def slices(self, spec: str) -> dict:
        """`{slice name: bool [N]}` of a spec, crosses included; empty slices left out."""
        specs = parts(spec)
        out = self.groups(specs[0])
        if len(specs) == 2:
            other = self.groups(specs[1])
            out = {f"{a} & {b}": mask_a & mask_b for a, mask_a in out.items() for b, mask_b in other.items()}
        return {name: mask for name, mask in out.items() if mask.any()}


def _by_value(prefix: str, values) -> dict:
    values = np.asarray(values, dtype=object)
    return {f"{prefix}:{value}": values == value for value in sorted(set(values.tolist()))}


def compute(statistics: dict, from_sums, masks: dict, min_size: int = MIN_SIZE, **interval_args) -> dict:
    """Each slice's metrics, 95% intervals and summed statistics.

    Args:
      statistics: `{name: [N, k]}` the evaluation's per-example statistics.
      from_sums: the task's `{name: [R, k]} -> {metric: [R]}`.
      masks: `{slice name: bool [N]}`.

    Returns:
      `{slice: {"num_examples", "metrics", "ci", "sums"}}`; a slice under `min_size`
      examples has `"too_small": True` instead of metrics and intervals (its sums are kept,
      so the slices of a partition still add up to the whole set).
    """
    out = {}
    for name, mask in masks.items():
        count = int(np.count_nonzero(mask))
        kept = {key: np.asarray(values)[mask] for key, values in statistics.items()}
        sums = bootstrap.totals(kept)
        summed = {key: [_number(v) for v in value[0]] for key, value in sums.items()}
        if count < min_size:
            out[name] = {"num_examples": count, "too_small": True, "sums": summed}
            continue
        out[name] = {
            "num_examples": count,
            "metrics": {key: _number(value[0]) for key, value in from_sums(sums).items()},
            "ci": bootstrap.intervals(kept, from_sums, **interval_args),
            "sums": summed,
        }
    return out


def _number(value):
    value = float(value)
    if np.isnan(value):
        return None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def table(slices: dict, metric: str, higher_is_better: bool) -> str:
    """The slices as text, worst `metric` first (too-small slices last)."""
    if not slices:
        return "slices: none"
    sized = [(name, value) for name, value in slices.items() if not value.get("too_small")]
    undefined = [(name, value) for name, value in sized if value["metrics"].get(metric) is None]
    sized = [(name, value) for name, value in sized if value["metrics"].get(metric) is not None]
    sized.sort(key=lambda item: item[1]["metrics"][metric] * (1 if higher_is_better else -1))
    small = [(name, value) for name, value in slices.items() if value.get("too_small")]
    width = max(len(name) for name in slices)
    lines = [f"slices by {metric}, worst first", f"  {'slice':<{width}}  {'examples':>8}  {metric:>10}  95% interval"]
    for name, value in sized + undefined:
        number = value["metrics"].get(metric)
        interval = value["ci"].get(metric)
        shown = "       n/a" if number is None else f"{number:10.4f}"
        bounds = f"[{interval['low']:.4f}, {interval['high']:.4f}]" if interval else "n/a"
        lines.append(f"  {name:<{width}}  {value['num_examples']:8d}  {shown}  {bounds}")
    for name, value in small:
        lines.append(f"  {name:<{width}}  {value['num_examples']:8d}  too small")
    return "\n".join(lines)
