"""From a folder of your images to a dataset that trains: records, a validation split, a
report and a gin file, in one command, for each of the three tasks.

    # Segmentation: images and same-named PNG masks (class ids; other values with --mask_values=0,255;
    # RGB colours with --mask_colors=TABLE).
    python tools/build_dataset.py --name=roads --image_dir=my/images --mask_dir=my/masks --class_names=sky,road,car
    # Segmentation: a PASCAL VOC tree, with its own train and val lists.
    python tools/build_dataset.py --name=voc --voc_root=VOCdevkit/VOC2012
    # Classification: one subfolder per class.
    python tools/build_dataset.py --name=pets --image_dir=my/pets
    # Regression: images and a CSV of file,target[,target...].
    python tools/build_dataset.py --name=ages --image_dir=my/faces --targets=my/faces/ages.csv
    # Then:
    python train.py --gin_file=configs/roads.gin

It writes `datasets/<name>/`: the records (`train-*.tfrecord`, `val-*.tfrecord`), the
split's file lists (`train.txt`, `val.txt`: line i is example i's source file) and the
report (`report.txt`, `report.json`); then `configs/<name>.gin`, which trains as it
stands. A folder whose only subfolders are `train/` and `val/` keeps that split (for
segmentation, the image and the mask folder both); otherwise `--val_fraction` of the
examples are drawn for validation with `--seed` (by class, for classification).

The gin file's crop is the images' size (at most `--max_side` a side; segmentation crops
larger images at their own resolution, classification and regression resize them),
its batch size follows the crop, and its step budget is 2,000 steps unless the training
steps measured here with the written config (`--measure_steps`) say that takes longer
than `--time_budget_minutes`. The report gives the example counts, the image sizes, the
class frequencies (pixels or examples; a class absent from a split is a warning) or the
target ranges, and that measured speed.

Nothing is mixed, misaligned or accepted broken: the dataset is written into a staging
folder and swapped in whole (a rebuild leaves no old shard; a failed build leaves the
previous dataset as it was); every image is decoded in full (`data/images.py`) and
turned upright by its EXIF orientation; images over `--max_pixels` are refused from
their header; a mask colour not in the table is refused, naming the file; masks whose
values are plainly not class ids (binary 0/255, grey levels) are refused with the
`--mask_values` that reads them; files that are not images it reads get a notice.
"""

import glob
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time

import numpy as np
from absl import flags

from common import files, runtime
from common.constants import IGNORE_LABEL
from common.errors import DataError, Interrupted
from core import cli
from data import images, sources

FLAGS = flags.FLAGS

WRITTEN_BY = "tools/build_dataset.py"
SPLITS = sources.SPLITS
DEFAULT_STEPS = 2000
NETWORK_MULTIPLE = 8  # The default U-Net's 2**depth: a training crop is a multiple of it.


def find(image_dir=None, mask_dir=None, voc_root=None, targets=None, class_names=None, colours=None,
         val_fraction=0.2, seed=42):  # fmt: skip
    """The dataset's examples: a dict with `task`, `splits` ({split: [Item]}), `roots`
    ({split: the folder the records' file names are relative to}), `class_names` (None:
    from the masks) and `how` (how it was split, for the report).

    Raises:
      DataError: a layout that is none of the known ones, or the file at fault in it.
    """
    if voc_root:
        if image_dir or mask_dir or targets:
            raise DataError("--voc_root goes alone (not with --image_dir, --mask_dir or --targets)")
        splits = {split: sources.voc(voc_root, split) for split in SPLITS}
        both = {item.image for item in splits["train"]} & {item.image for item in splits["val"]}
        if both:
            raise DataError(f"{voc_root}: train.txt and val.txt both list {len(both)} id(s), e.g. {sorted(both)[0]}")
        root = os.path.join(voc_root, "JPEGImages")
        how = "the VOC tree's ImageSets/Segmentation/train.txt and val.txt"
        return _found("segmentation", splits, {split: root for split in SPLITS}, class_names, how)
    if not image_dir:
        raise DataError("give --image_dir (with --mask_dir, --targets or class folders) or --voc_root")
    sources.check_folder(image_dir, "image_dir")
    already = sources.presplit(image_dir)
    if mask_dir:
        if targets:
            raise DataError("--mask_dir (segmentation) and --targets (regression) do not go together")
        if already:
            splits = {s: sources.segmentation(os.path.join(image_dir, s), os.path.join(mask_dir, s)) for s in SPLITS}
            _notice_unused(image_dir, splits["train"] + splits["val"], "are not directly in train/ or val/", mask_dir)
            for split in SPLITS:
                _notice_masks(os.path.join(mask_dir, split), splits[split])
            return _found("segmentation", splits, _roots(image_dir, True), class_names, _presplit_note(image_dir))
        items = sources.segmentation(image_dir, mask_dir)
        _notice_unused(image_dir, items, "are in subfolders (only the files directly in it are read)", mask_dir)
        _notice_masks(mask_dir, items)
        splits = sources.split(items, val_fraction, seed)
        return _found("segmentation", splits, _roots(image_dir, False), class_names, _drawn(val_fraction, seed))
    if targets:
        items, names = sources.csv_targets(image_dir, targets)
        _notice_unused(image_dir, items, f"are not in {targets}", table=targets)
        names = list(class_names) if class_names else names
        if len(names) != len(items[0].target):
            raise DataError(f"--class_names has {len(names)} names for {len(items[0].target)} target(s)")
        top = [os.path.relpath(item.image, image_dir).split(os.sep)[0] for item in items]
        if sources.check_split_names(set(top), targets):  # The CSV's files are under train/ and val/.
            splits = {split: [item for item, first in zip(items, top) if first == split] for split in SPLITS}
            return _found("regression", splits, _roots(image_dir, True), names, _presplit_note(image_dir))
        splits = sources.split(items, val_fraction, seed)
        return _found("regression", splits, _roots(image_dir, False), names, _drawn(val_fraction, seed))
    if already:
        train, names = sources.class_folders(os.path.join(image_dir, "train"), class_names)
        val, _ = sources.class_folders(os.path.join(image_dir, "val"), names, allow_missing=True)
        how = _presplit_note(image_dir)
        _notice_unused(image_dir, train + val, "are not in a class folder of train/ or val/")
        return _found("classification", {"train": train, "val": val}, _roots(image_dir, True), names, how)
    items, names = sources.class_folders(image_dir, class_names)
    _notice_unused(image_dir, items, "are not in a class folder")
    splits = sources.split(items, val_fraction, seed, strata=[item.class_id for item in items])
    how = _drawn(val_fraction, seed) + ", stratified by class"
    return _found("classification", splits, _roots(image_dir, False), names, how)


def _notice_unused(image_dir, items, why, mask_dir=None, table=None):
    """One line for the images under `image_dir` that no example uses, and one for the files that
    are not images it reads (outside `mask_dir`; the CSV `table`): nothing is left out in silence."""
    masks = os.path.abspath(mask_dir) + os.sep if mask_dir else None

    def inputs_aside(paths):  # The masks and the CSV are inputs, not files left out.
        return [path for path in paths if not (masks and os.path.abspath(path).startswith(masks))
                and not (table and os.path.abspath(path) == os.path.abspath(table))]  # fmt: skip

    unused, others = (inputs_aside(paths) for paths in sources.left_out(image_dir, items))
    if unused:
        print(f"notice: {len(unused)} image(s) in {image_dir} {why} and are left out (first: {unused[0]})")
    if others:
        kinds = ", ".join(sorted({os.path.splitext(path)[1].lower() or "no extension" for path in others}))
        print(f"notice: {len(others)} file(s) in {image_dir} are not images this tool reads ({kinds}; it reads "
              f"{', '.join(sources.IMAGE_EXTENSIONS)}) and are left out (first: {others[0]})")  # fmt: skip


def _notice_masks(mask_dir, items):
    unused = sources.masks_without_an_image(mask_dir, items)
    if unused:
        print(f"notice: {len(unused)} mask(s) in {mask_dir} have no image and are left out (first: {unused[0]})")


def _found(task, splits, roots, class_names, how):
    return {"task": task, "splits": splits, "roots": roots, "class_names": class_names, "how": how}


def _roots(image_dir, presplit):
    return {split: os.path.join(image_dir, split) if presplit else image_dir for split in SPLITS}


def _presplit_note(image_dir):
    return f"the folders {os.path.join(image_dir, 'train')} and {os.path.join(image_dir, 'val')}"


def _drawn(val_fraction, seed):
    return f"a seeded draw of {val_fraction:g} for validation (--seed={seed})"


def build(
    name,
    image_dir=None,
    mask_dir=None,
    voc_root=None,
    targets=None,
    class_names=None,
    mask_colors=None,
    unknown_colors="error",
    mask_values=None,
    val_fraction=0.2,
    seed=42,
    output_dir=None,
    config=None,
    num_shards=0,
    max_pixels=images.MAX_PIXELS,
    max_side=256,
    measure_steps=10,
    time_budget_minutes=30,
    command=None,
):
    """Builds the dataset and writes its gin file; returns the report (a dict, also saved as JSON).

    See the module docstring; the arguments are the flags of the same names.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name or ""):
        raise DataError(
            f"--name={name!r}: up to 100 letters, digits, '_', '.' and '-' (it names a folder and a gin file)"
        )
    if max_side < NETWORK_MULTIPLE:
        raise DataError(f"--max_side={max_side}: at least {NETWORK_MULTIPLE} (the network's multiple)")
    output_dir = output_dir or os.path.join("datasets", name)
    config = config or os.path.join("configs", f"{name}.gin")
    _check_outputs(output_dir, config, [image_dir, mask_dir, voc_root, targets, mask_colors])
    colours = images.ColourTable.read(mask_colors) if mask_colors else None
    if colours and class_names:
        raise DataError("--class_names and --mask_colors both name the classes; give one")
    if class_names and len(set(class_names)) != len(class_names):
        raise DataError(f"--class_names names a class twice: {','.join(class_names)}")
    mask_values = _mask_values(mask_values, colours, class_names)
    found = find(image_dir, mask_dir, voc_root, targets, class_names or (colours and colours.names), colours,
                 val_fraction, seed)  # fmt: skip
    found["output_dir"] = output_dir
    if mask_values is not None:
        if found["task"] != "segmentation":
            raise DataError(f"--mask_values is for segmentation masks; this is {found['task']}")
        count = int(np.sum((mask_values >= 0) & (mask_values != IGNORE_LABEL)))  # The values listed.
        found["class_names"] = found["class_names"] or [f"class_{i}" for i in range(count)]
    files.restore_folder(output_dir)
    staging = _staging_folder(output_dir)
    try:  # Everything is written into the staging folder, and measured there: a failure leaves the old dataset.
        splits = {
            split: _write_split(
                found, split, staging, colours, unknown_colors == "ignore", max_pixels, num_shards, mask_values
            )
            for split in SPLITS
        }
        if found["task"] == "segmentation" and not (colours or class_names) and mask_values is None:
            _check_mask_values(splits)
        report = _report(name, found, splits, output_dir, command)
        macros, report["training"] = _plan_training(report, splits["train"]["sizes"], staging, config, max_side,
                                                    measure_steps, time_budget_minutes)  # fmt: skip
        files.write_atomic(os.path.join(staging, "report.json"), json.dumps(report, indent=1) + "\n")
        text = format_report(report)
        files.write_atomic(os.path.join(staging, "report.txt"), text + "\n")
        _check_outputs(output_dir, config, [])  # Still absent or ours: nothing else took the place meanwhile.
        files.replace_folder(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    files.write_atomic(config, config_text(report, output_dir, macros, report["training"]))
    print(text)
    return report


def _staging_folder(output_dir):
    """A new folder beside `output_dir`, with the umask's mode (mkdtemp's is owner-only); staging
    folders that a killed build left (their process gone) are removed first."""
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    prefix = f".{os.path.basename(os.path.abspath(output_dir))}.staging-"
    for leftover in glob.glob(os.path.join(glob.escape(parent), glob.escape(prefix) + "*")):
        pid = leftover[len(os.path.join(parent, prefix)) :].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)
    staging = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent)
    os.chmod(staging, 0o777 & ~files.umask())
    return staging


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_outputs(output_dir, config, inputs):
    """Refuses to replace a folder or a gin file this tool did not write, or one that holds the inputs."""
    out = os.path.abspath(output_dir)
    if glob.escape(output_dir) != output_dir:
        raise DataError(f"--output_dir {output_dir!r}: no *, ? or [ in it (the gin file's patterns glob it)")
    if os.path.islink(output_dir):
        raise DataError(f"--output_dir {output_dir} is a symbolic link; give the folder it points to")
    if os.path.isdir(config):
        raise DataError(
            f"--config {config} is a folder; give the gin file to write, e.g. {os.path.join(config, 'x.gin')}"
        )
    parent = os.path.dirname(os.path.abspath(config))
    while not os.path.exists(parent):  # The folders write_atomic would make: none of them a file.
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise DataError(f"--config {config}: {parent} is a file, not a folder")
    for path in filter(None, inputs):
        path = os.path.abspath(path)
        if path == out or path.startswith(out + os.sep):
            raise DataError(f"--output_dir {output_dir} holds the input {path}; write the dataset elsewhere")
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        report = os.path.join(output_dir, "report.json")
        try:
            with open(report) as f:
                ours = json.load(f).get("written_by") == WRITTEN_BY
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise DataError(f"{output_dir} exists and was not written by {WRITTEN_BY}; give another --output_dir")
    elif os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise DataError(f"{output_dir} is a file; give another --output_dir")
    if os.path.exists(config):
        with open(config) as f:
            if not f.readline().startswith(f"# Written by {WRITTEN_BY}"):
                raise DataError(f"{config} exists and was not written by {WRITTEN_BY}; give another --config")


def _mask_values(values, colours, class_names):
    """`--mask_values` as a lookup table (mask value -> class id, -1: not listed), or None."""
    if not values:
        return None
    try:
        values = [int(value) for value in values]
    except ValueError:
        raise DataError(f"--mask_values={','.join(values)}: integers from 0 to 255, one per class") from None
    if colours:
        raise DataError("--mask_values and --mask_colors both say what a mask holds; give one")
    if not all(0 <= value <= 255 for value in values) or len(set(values)) != len(values):
        raise DataError(f"--mask_values={','.join(map(str, values))}: distinct integers from 0 to 255, one per class")
    if class_names and len(class_names) != len(values):
        raise DataError(f"--class_names has {len(class_names)} names for {len(values)} --mask_values")
    table = np.full(256, -1, np.int64)
    table[values] = np.arange(len(values))
    if IGNORE_LABEL not in values:
        table[IGNORE_LABEL] = IGNORE_LABEL  # Still the ignore label, unless it is listed as a class.
    return table


def _check_mask_values(splits):
    """Refuses masks whose values are plainly not class ids, before the dataset is swapped in (the
    records are in the staging folder; the previous dataset stays): 0 the only class beside 255
    (the ignore label: binary masks, the object 255; such a dataset has nothing to learn), or up
    to 16 values reaching 64 or more that use under a quarter of the ids up to their largest (grey
    levels, e.g. 0, 100, 200 or 0, 64, 128, 191: NUM_CLASSES would be 201 or 192; not VOC's
    background and person alone, 0 and 15). --class_names skips the check."""
    counts = sum(splits[split]["pixel_counts"] for split in SPLITS)
    present = np.flatnonzero(counts[:IGNORE_LABEL])
    ignored = counts[IGNORE_LABEL] / max(counts.sum(), 1)
    if present.tolist() in ([0], []) and counts[IGNORE_LABEL]:
        raise DataError(
            f"the masks hold only 0 and 255, and 255 is the ignore label ({ignored:.1%} of their pixels): binary "
            "masks whose object is 255? --mask_values=0,255 reads 255 as class 1"
        )
    if 1 < present.size <= 16 and present.max() >= 64 and present.size * 4 <= present.max() + 1:
        values = ",".join(map(str, present.tolist() + ([IGNORE_LABEL] if counts[IGNORE_LABEL] else [])))
        raise DataError(
            f"the masks hold the values {', '.join(map(str, present.tolist()))} ({present.size} of the ids up to "
            f"{present.max()}): grey levels rather than class ids 0, 1, 2, ...? --mask_values={values} reads them "
            "as classes in that order; if they are class ids, --class_names names the classes"
        )


def _write_split(found, split, staging, colours, unknown_to_ignore, max_pixels, num_shards, mask_values=None):
    """Writes one split's records and file list into `staging`; returns its summary."""
    from data import writer

    items, root = found["splits"][split], found["roots"][split]
    num_classes = len(found["class_names"]) if found["task"] == "segmentation" and found["class_names"] else None

    def examples():
        for item in items:
            name = os.path.relpath(item.image, root)
            if "\n" in name or "\r" in name:
                raise DataError(f"{item.image!r}: a file name with a line break (the file lists hold one per line)")
            example = item.read(name, colours, unknown_to_ignore, max_pixels)
            if mask_values is not None and "mask" in example:
                ids = mask_values[example["mask"]]
                if (ids < 0).any():
                    listed = np.flatnonzero((mask_values >= 0) & (mask_values != IGNORE_LABEL))
                    listed = ", ".join(map(str, listed[np.argsort(mask_values[listed])]))
                    raise DataError(f"{item.mask}: value {example['mask'][ids < 0][0]} in a mask is not in "
                                    f"--mask_values ({listed}; 255 is ignore unless listed)")  # fmt: skip
                example["mask"] = ids.astype(np.uint8)
            if num_classes is not None:
                values = np.unique(example["mask"])
                bad = values[(values >= num_classes) & (values != IGNORE_LABEL)]
                if bad.size:
                    raise DataError(f"{item.mask}: class id {bad[0]} in a mask, but there are {num_classes} classes "
                                    f"({', '.join(found['class_names'])}); 255 is ignore")  # fmt: skip
            yield example

    shards = num_shards or _auto_shards(items)
    shown_as = os.path.join(found["output_dir"], split)
    stats = writer.write_shards(
        examples(), len(items), os.path.join(staging, split), min(shards, len(items)), True, shown_as
    )
    listing = [f"# {split}: example i is line i (from 0) below, a file in {os.path.abspath(root)}"]
    listing += [os.path.relpath(item.image, root) for item in items]
    files.write_atomic(os.path.join(staging, f"{split}.txt"), "\n".join(listing) + "\n")
    return {"examples": len(items), "shards": len(stats["paths"]), **stats}


def _auto_shards(items) -> int:
    """About 100 MB of source files a shard (TensorFlow's advice), at least one."""
    total = sum(os.path.getsize(item.image) for item in items)
    return max(1, min(len(items), -(-total // 100_000_000)))


def _report(name, found, splits, output_dir, command):
    task, class_names = found["task"], found["class_names"]
    sizes = np.array([size for split in SPLITS for size in splits[split]["sizes"]])
    if task == "segmentation" and not class_names:
        present = [np.flatnonzero(splits[s]["pixel_counts"][:IGNORE_LABEL]) for s in SPLITS]
        count = max(int(p.max()) + 1 if p.size else 1 for p in present)
        class_names = [f"class_{i}" for i in range(max(count, 2))]
    report = {
        "written_by": WRITTEN_BY,
        "name": name,
        "task": task,
        "command": command,
        "built": time.strftime("%Y-%m-%d %H:%M:%S"),
        "split": found["how"],
        "class_names": class_names,
        "image_sizes": {
            "min": sizes.min(axis=0).tolist(),
            "median": np.median(sizes, axis=0).astype(int).tolist(),
            "max": sizes.max(axis=0).tolist(),
            "distinct": len({tuple(size) for size in sizes.tolist()}),
            "megapixels_max": round(float((sizes[:, 0] * sizes[:, 1]).max()) / 1e6, 3),
        },
        "splits": {},
        "warnings": [],
    }
    for split in SPLITS:
        summary = {
            "examples": splits[split]["examples"],
            "shards": splits[split]["shards"],
            "files": os.path.join(output_dir, f"{split}-*.tfrecord"),
            "list": os.path.join(output_dir, f"{split}.txt"),
        }
        if task == "segmentation":
            counts = splits[split]["pixel_counts"]
            summary["pixels"] = {n: int(counts[i]) for i, n in enumerate(class_names)}
            summary["pixels"]["ignore"] = int(counts[IGNORE_LABEL])
        elif task == "classification":
            counts = np.pad(splits[split]["label_counts"], (0, len(class_names)))[: len(class_names)]
            summary["examples_per_class"] = {n: int(counts[i]) for i, n in enumerate(class_names)}
        else:
            summary["targets"] = {
                n: {key: splits[split]["target_summary"][key][i] for key in ("min", "mean", "max")}
                for i, n in enumerate(class_names)
            }
        report["splits"][split] = summary
    if task != "regression":
        per = "pixels" if task == "segmentation" else "examples_per_class"
        for split in SPLITS:
            absent = [n for n in class_names if report["splits"][split][per][n] == 0]
            if absent:
                effect = "its metrics there are undefined (NaN)" if split == "val" else "the model never sees it"
                report["warnings"].append(f"class(es) {', '.join(absent)} absent from {split}: {effect}")
    return report


def choose_training(task, sizes, max_side=256, multiple=NETWORK_MULTIPLE):
    """The gin file's image settings from the train images' `(height, width)`s: a dict of macros.

    The crop is the largest image's size, at most `max_side` a side, rounded up to the
    network's multiple (smaller images are padded). Segmentation crops larger images at
    their own resolution (DeepLab's way: evaluation runs at each image's own size, as the
    exported model does). Classification and regression see the whole image, so larger
    images are resized to at most `max_side` a side, in training and evaluation alike.
    The batch size falls as the crop grows: 16 up to 128x128, 8 up to 192x192, then 4.
    """
    sizes = np.asarray(sizes, np.float64)
    macros = {}
    if task != "segmentation" and sizes.max() > max_side:
        scale = np.minimum(1.0, max_side / sizes.max(axis=1))[:, None]
        sizes = np.floor(sizes * scale)
        macros["MAX_RESIZE_VALUE"] = max_side
        macros["EVAL_RESIZE"] = (None, max_side)
    crop = [int(-(-min(side, max_side) // multiple) * multiple) for side in sizes.max(axis=0)]
    area = crop[0] * crop[1]
    batch = 16 if area <= 128 * 128 else 8 if area <= 192 * 192 else 4
    return {"IMAGE_HEIGHT": crop[0], "IMAGE_WIDTH": crop[1], "TRAIN_BATCH_SIZE": batch, "EVAL_BATCH_SIZE": batch,
            **macros}  # fmt: skip


def _plan_training(report, train_sizes, staging, config, max_side, measure_steps, time_budget_minutes):
    """The gin file's macros and the training figures: the settings from the image sizes, then the
    speed of a gin file with them measured here on the staged records, and the step budget."""
    macros = choose_training(report["task"], train_sizes, max_side)
    val_count = report["splits"]["val"]["examples"]
    macros.update(TRAIN_STEPS=DEFAULT_STEPS, EVAL_EVERY_STEPS=DEFAULT_STEPS // 4,
                  SUMMARY_INDICES=list(range(min(4, val_count))))  # fmt: skip
    training = {"config": config, "crop": [macros["IMAGE_HEIGHT"], macros["IMAGE_WIDTH"]],
                "batch": macros["TRAIN_BATCH_SIZE"], "steps_per_s": None}  # fmt: skip
    if measure_steps > 0:
        trial = os.path.join(staging, "measure.gin")
        files.write_atomic(trial, config_text(report, staging, macros, training))
        training["steps_per_s"] = round(measure(trial, measure_steps, macros["TRAIN_BATCH_SIZE"]), 3)
        os.remove(trial)
        budget = time_budget_minutes * 60 * training["steps_per_s"]
        if budget < DEFAULT_STEPS:
            steps = max(100, int(budget) // 100 * 100)
            macros.update(TRAIN_STEPS=steps, EVAL_EVERY_STEPS=steps // 4)
            training["budget_note"] = (
                f"{DEFAULT_STEPS} steps would take {DEFAULT_STEPS / training['steps_per_s'] / 60:.0f} minutes here; "
                f"cut to {steps} to fit --time_budget_minutes={time_budget_minutes:g}"
            )
        training["minutes"] = round(macros["TRAIN_STEPS"] / training["steps_per_s"] / 60, 1)
    training["steps"] = macros["TRAIN_STEPS"]
    return macros, training


def measure(config: str, steps: int, batch: int) -> float:
    """Training steps/s of `config` on this machine: `steps` steps after 3 of warm-up, in a scratch folder."""
    from core import speed

    print(f"measuring {steps} training steps of the written settings ...", flush=True)
    scratch = tempfile.mkdtemp(prefix="build_dataset_measure_")
    try:
        model_fn, train_input_fn, _ = speed.configured([config], [f"MODEL_DIR = {scratch!r}"])
        rate, _ = speed.training_rate(model_fn, train_input_fn, scratch, 3, steps, batch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rate / batch


def _gin_path(path: str) -> str:
    """A path as the gin file says it: relative to the working directory when inside it."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return absolute if relative.startswith("..") else relative


def config_text(report, output_dir, macros, training) -> str:
    """The gin file: a header saying how it was made and what to expect, then the macros."""
    task, names = report["task"], report["class_names"]
    splits = report["splits"]
    speed = training.get("steps_per_s")
    expected = (
        f"{speed:.1f} steps/s measured here on this config: {macros['TRAIN_STEPS']} steps take about "
        f"{training['minutes']:g} minutes of training, plus {macros['TRAIN_STEPS'] // macros['EVAL_EVERY_STEPS']} "
        f"evaluations of the {splits['val']['examples']} val images"
        if speed
        else "not measured (--measure_steps=0)"
    )
    lines = [
        f"# Written by {WRITTEN_BY}: rewritten by the next build of this dataset; copy it under another",
        "# name to change it.",
        f"# {report['name']}: {task}, {splits['train']['examples']} train and {splits['val']['examples']} val images "
        f"(split by {report['split']}).",
        f"# Report: {os.path.join(_gin_path(output_dir), 'report.txt')}",
        "#",
        f"#   {report['command'] or WRITTEN_BY}",
        f"#   python train.py --gin_file={_gin_path(training['config'])}",
        "#",
        f"# Expected: {expected}.",
    ]
    if training.get("budget_note"):
        lines.append(f"# {training['budget_note']}.")
    lines += ["", "include 'configs/base.gin'", "", f"TASK = @{task}()"]
    lines.append(f"TRAIN_FILES = {os.path.join(glob.escape(_gin_path(output_dir)), 'train-*.tfrecord')!r}")
    lines.append(f"VAL_FILES = {os.path.join(glob.escape(_gin_path(output_dir)), 'val-*.tfrecord')!r}")
    lines.append(f"NUM_CLASSES = {len(names)}" + ("  # Targets." if task == "regression" else ""))
    lines.append(f"CLASS_NAMES = {names!r}")
    crop_note = "The training crop" + ("; evaluation runs each image at its own size." if task == "segmentation" else
                                       " (smaller images are padded).")  # fmt: skip
    lines.append(f"IMAGE_HEIGHT = {macros['IMAGE_HEIGHT']}  # {crop_note}")
    lines.append(f"IMAGE_WIDTH = {macros['IMAGE_WIDTH']}")
    if "MAX_RESIZE_VALUE" in macros:
        lines.append(f"# Images over {macros['MAX_RESIZE_VALUE']} pixels a side are resized (training and evaluation);")
        lines.append("# the exported model takes images as they are: resize them the same before tools/predict.py.")
        lines.append(f"MAX_RESIZE_VALUE = {macros['MAX_RESIZE_VALUE']}")
        lines.append(f"EVAL_RESIZE = (None, {macros['MAX_RESIZE_VALUE']})")
    for key in ("TRAIN_BATCH_SIZE", "EVAL_BATCH_SIZE", "TRAIN_STEPS", "EVAL_EVERY_STEPS", "SUMMARY_INDICES"):
        lines.append(f"{key} = {macros[key]}")
    if macros["TRAIN_STEPS"] < 1000:
        lines.append(f"build_model_fn.warmup_steps = {macros['TRAIN_STEPS'] // 10}")
    lines.append(f"MODEL_DIR = {_gin_path(os.path.join('runs', report['name']))!r}")
    return "\n".join(lines) + "\n"


def format_report(report) -> str:
    """The report as printed and saved in report.txt."""
    from data import writer

    task, names, splits = report["task"], report["class_names"], report["splits"]
    sizes = report["image_sizes"]
    lines = [f"{report['name']}: {task}, split by {report['split']}"]
    for split in SPLITS:
        lines.append(f"  {split:>5}: {splits[split]['examples']:>6} examples in {splits[split]['shards']} shard(s) "
                     f"{splits[split]['files']} (files: {splits[split]['list']})")  # fmt: skip
    lines.append(
        f"image sizes: heights {sizes['min'][0]} to {sizes['max'][0]} (median {sizes['median'][0]}), widths "
        f"{sizes['min'][1]} to {sizes['max'][1]} (median {sizes['median'][1]}), {sizes['distinct']} distinct sizes"
    )
    for split in SPLITS:
        if task == "segmentation":
            counts = np.zeros(256, np.int64)
            for i, name in enumerate(names):
                counts[i] = splits[split]["pixels"][name]
            counts[IGNORE_LABEL] = splits[split]["pixels"]["ignore"]
            lines += [f"{split} pixels per class:", writer.format_pixel_counts(counts, names)]
        elif task == "classification":
            counts = [splits[split]["examples_per_class"][name] for name in names]
            lines += [f"{split} examples per class:", writer.format_label_counts(counts, names)]
        else:
            targets = splits[split]["targets"]
            summary = {key: [targets[name][key] for name in names] for key in ("min", "mean", "max")}
            lines += [f"{split} targets:", writer.format_target_summary(summary, names)]
    lines += [f"warning: {warning}" for warning in report["warnings"]]
    training = report["training"]
    lines.append(
        f"training ({training['config']}): crop {training['crop'][0]}x{training['crop'][1]}, "
        f"batch {training['batch']}, "
        + (
            f"{training['steps_per_s']:.1f} steps/s measured here, so {training['steps']} steps take about "
            f"{training['minutes']:g} minutes (plus evaluations)"
            if training.get("steps_per_s")
            else f"{training['steps']} steps (speed not measured)"
        )
    )
    if training.get("budget_note"):
        lines.append(f"  {training['budget_note']}")
    lines.append(f"next: python train.py --gin_file={_gin_path(training['config'])}")
    return "\n".join(lines)


def _stop(signal_number, frame):
    del frame
    raise Interrupted(f"stopped by signal {signal_number}; the previous dataset is as it was", signal_number)


def main(argv):
    del argv
    runtime.quiet()
    signal.signal(signal.SIGTERM, _stop)  # Unwinds through the staging folder's cleanup.
    build(
        FLAGS.name,
        image_dir=FLAGS.image_dir,
        mask_dir=FLAGS.mask_dir,
        voc_root=FLAGS.voc_root,
        targets=FLAGS.targets,
        class_names=FLAGS.class_names,
        mask_colors=FLAGS.mask_colors,
        unknown_colors=FLAGS.unknown_colors,
        mask_values=FLAGS.mask_values,
        val_fraction=FLAGS.val_fraction,
        seed=FLAGS.seed,
        output_dir=FLAGS.output_dir,
        config=FLAGS.config,
        num_shards=FLAGS.num_shards,
        max_pixels=FLAGS.max_pixels,
        max_side=FLAGS.max_side,
        measure_steps=FLAGS.measure_steps,
        time_budget_minutes=FLAGS.time_budget_minutes,
        command=" ".join(["python", "tools/build_dataset.py", *sys.argv[1:]]),
    )


def define_flags():
    """The command line (defined here, not at import, so the functions import anywhere)."""
    from tools import build_tfrecords

    flags.DEFINE_string("name", None, "The dataset's name: datasets/<name>/, configs/<name>.gin, runs/<name>.")
    flags.DEFINE_string("image_dir", None, "The images: a folder (with class subfolders for classification).")
    flags.DEFINE_string("mask_dir", None, "Segmentation: PNG masks named like the images (stem.png).")
    flags.DEFINE_string(
        "voc_root", None, "Segmentation: a PASCAL VOC-style tree (JPEGImages/, SegmentationClass/, ...)."
    )
    flags.DEFINE_string(
        "targets", None, "Regression: a CSV of file,target[,target...] (files relative to --image_dir)."
    )
    flags.DEFINE_list("class_names", None, "Class (or target) names; default: the class folders, the colour table, "
                      "the CSV header, or class_<id>.")  # fmt: skip
    flags.DEFINE_list("mask_values", None, "Segmentation: the values grey masks hold, one per class in id order "
                      "(binary 0,255; grey levels 0,100,200); default: the values are the class ids.")  # fmt: skip
    flags.DEFINE_float("val_fraction", 0.2, "The share drawn for validation when the folder is not split already.")
    flags.DEFINE_integer("seed", 42, "The seed of that draw.")
    flags.DEFINE_string("output_dir", None, "Default datasets/<name>.")
    flags.DEFINE_string("config", None, "The gin file to write; default configs/<name>.gin.")
    flags.DEFINE_integer("num_shards", 0, "Shards per split; 0: about 100 MB of images each.")
    flags.DEFINE_integer("max_side", 256, "The training crop's largest side (see the module docstring).")
    flags.DEFINE_integer("measure_steps", 10, "Training steps timed with the written config; 0: not measured.")
    flags.DEFINE_float("time_budget_minutes", 30, "The step budget is cut to fit this training time.")
    build_tfrecords.define_image_flags()
    flags.mark_flags_as_required(["name"])


if __name__ == "__main__":
    define_flags()
    cli.run(main)
