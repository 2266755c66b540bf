"""Data: the TFRecord schema, writers, the synthetic dataset and input_fn builders."""
