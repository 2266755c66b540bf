"""The index beside each shard (`data/records_index.py`): start-up reads it instead of
every record, and falls back to the records whenever the shard changed."""

import os

import pytest

from data import input as data_input
from data import records_index, synthetic, writer
from models.segmentation import Segmentation

SEGMENTATION = Segmentation(4)


def _write(root, count=9, shards=3, size=(20, 28)):
    examples = (
        {**synthetic.example("segmentation", 2, "val", i, *size), "filename": f"img_{i}.png"} for i in range(count)
    )
    return writer.write_shards(examples, count, str(root / "val"), shards, progress=False)["paths"]


def _no_record_reads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a record was read")

    monkeypatch.setattr(data_input, "count_records", refuse)
    monkeypatch.setattr(data_input, "scan_shard", refuse)


def test_the_converter_writes_an_index_and_start_up_reads_no_record(tmp_path, monkeypatch):
    paths = _write(tmp_path)
    truth = data_input.list_files(str(tmp_path / "val-*"))
    assert truth == paths  # The pattern `val-*` matches the indexes too; they are left out.
    expected = [(f"img_{i}", 20, 28) for i in range(9)]
    _no_record_reads(monkeypatch)
    fn = data_input.make_input_fn(str(tmp_path / "val-*"), 4, 20, 28, SEGMENTATION)
    assert fn.num_examples == 9
    assert [(name.rsplit(".", 1)[0], h, w) for name, h, w in fn.examples] == expected


def test_a_changed_shard_is_read_again_and_counted_right(tmp_path, monkeypatch):
    paths = _write(tmp_path)
    other = _write(tmp_path / "other", count=4, shards=1)[0]
    # Shard 1 replaced by another one (4 examples): its index no longer matches its size.
    os.replace(other, paths[1])
    assert records_index.read(paths[1]) is None
    assert records_index.read(paths[0]) is not None
    fn = data_input.make_input_fn(str(tmp_path / "val-*"), 4, 20, 28, SEGMENTATION)
    assert fn.num_examples == 3 + 4 + 3
    # Same size, other time (rewritten in place): read again too.
    stat = os.stat(paths[2])
    os.utime(paths[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert records_index.read(paths[2]) is None


def test_a_truncated_shard_still_names_the_record(tmp_path):
    paths = _write(tmp_path)
    with open(paths[0], "r+b") as f:
        f.truncate(os.path.getsize(paths[0]) - 5)
    with pytest.raises(Exception, match=r"val-00000-of-00003\.tfrecord: record 2 is truncated"):
        data_input.make_input_fn(str(tmp_path / "val-*"), 4, 20, 28, SEGMENTATION, training=True)


def test_the_index_tool_indexes_shards_made_elsewhere(tmp_path, monkeypatch, capsys):
    paths = _write(tmp_path, count=5, shards=2)
    for path in paths:
        os.remove(records_index.index_path(path))
    from core import cli
    from tools import index_records

    assert cli.call(index_records.main, [str(tmp_path / "val-*.tfrecord")]) == 0
    assert capsys.readouterr().out.count("examples") == 2
    assert cli.call(index_records.main, [str(tmp_path / "nothing-*.tfrecord")]) == 1  # One line, exit 1.
    assert "error: no files match" in capsys.readouterr().err
    _no_record_reads(monkeypatch)
    assert data_input.make_input_fn(str(tmp_path / "val-*"), 2, 20, 28, SEGMENTATION).num_examples == 5
