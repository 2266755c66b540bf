"""Composition: the gin roots, the model directory's life, results and reporters.

It imports the folders below it (`common/`, `data/`, `models/`, `metrics/`, `hooks/`);
none of them imports it.
"""
