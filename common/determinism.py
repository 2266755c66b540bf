"""Op determinism, and the ops it refuses on a GPU: found on a CPU, before any GPU sees them.

`DETERMINISTIC = True` (configs/base.gin) turns on `tf.config.experimental.enable_op_determinism()`
in every entry point: the same command gives the same weights and numbers. Under it,
TensorFlow 2.15 refuses, at run time and only on a GPU, the ops that have no
deterministic GPU kernel (`UnimplementedError: Determinism is not yet supported in GPU
implementation of Bincount.`). `gpu_refusals(graph)` finds them in a graph built on any
machine: every op outside tf.data's functions (which run on the host), in the graph and
in the functions it calls (`tf.while_loop`, `tf.map_fn` bodies), that is on
`REFUSED_ON_GPU` and not placed on the CPU on purpose (`on_host()`), with the file and
line of the project's code that made it. tests/test_gpu_ops.py runs it on the TRAIN,
EVAL and PREDICT graphs of every gin file in configs/; `GpuOpCheck` runs it in every
graph a run builds (a warning on a CPU, an error before the first step with a GPU).

The list is TensorFlow 2.15.1's own: each entry is an `UnimplementedError` message
compiled into the installed kernels (`strings libtensorflow_cc.so.2 | grep -i determinis`),
with the kernel source that raises it. Not on it, because they have deterministic GPU
kernels in 2.15 under op determinism: the segment reductions and the gradient of
`tf.gather` (tensorflow/python/kernel_tests/math_ops/segment_reduction_ops_d9m_test.py
runs them on a GPU and expects no error), `ScatterNd`/`TensorScatter*`/`ResourceScatter*`
(resource variables), `ResizeBilinearGrad`, `BiasAddGrad`, cuDNN convolutions and
pooling (deterministic algorithms chosen), and the softmax cross-entropies, whose Python
API takes a deterministic path when determinism is on before the graph is built
(tensorflow/python/ops/nn_ops.py) - the raw ops stay on the list for code that calls them.
"""

import os
from typing import NamedTuple

import tensorflow as tf
from tensorflow.python.framework import config as tf_config  # is_/disable_op_determinism: not exported in 2.15.

from common.runtime import REPO_ROOT

_KERNELS = "tensorflow/core/kernels/"

# op type -> (the kernel source that raises, when it is refused: None always, else a test of the op)
REFUSED_ON_GPU = {
    "Bincount": (_KERNELS + "bincount_op.cc", None),
    "DenseBincount": (_KERNELS + "bincount_op.cc", None),
    "SparseTensorDenseMatMul": (_KERNELS + "sparse_tensor_dense_matmul_op.cc", None),
    "ResizeNearestNeighborGrad": (_KERNELS + "image/resize_nearest_neighbor_op.cc", None),
    "CropAndResizeGradImage": (_KERNELS + "image/crop_and_resize_op.cc", None),
    "CropAndResizeGradBoxes": (_KERNELS + "image/crop_and_resize_op.cc", None),
    "AdjustContrast": (_KERNELS + "image/adjust_contrast_op.cc", None),
    "AdjustContrastv2": (_KERNELS + "image/adjust_contrast_op.cc", None),
    "FakeQuantWithMinMaxVarsGradient": (_KERNELS + "fake_quant_ops.cc", None),
    "FakeQuantWithMinMaxVarsPerChannelGradient": (_KERNELS + "fake_quant_ops.cc", None),
    "Dilation2DBackpropInput": (_KERNELS + "dilation_ops.cc", None),
    "Dilation2DBackpropFilter": (_KERNELS + "dilation_ops.cc", None),
    "MaxPoolGradWithArgmax": (_KERNELS + "maxpooling_op.cc", None),
    "SoftmaxCrossEntropyWithLogits": (_KERNELS + "xent_op.cc", None),
    "SparseSoftmaxCrossEntropyWithLogits": (_KERNELS + "sparse_xent_op.cc", None),
    # Ref-variable scatters (tf.compat.v1 variables with use_resource=False).
    **{
        f"Scatter{kind}": (_KERNELS + "scatter_op.cc", None)
        for kind in ("Add", "Sub", "Mul", "Div", "Min", "Max", "Update")
    },
    # Batch-norm backprop with the statistics frozen (training=False, gradients still flowing).
    **{
        f"FusedBatchNormGrad{version}": (
            _KERNELS + "fused_batch_norm_op.cc",
            lambda op: not op.get_attr("is_training"),
        )
        for version in ("", "V2", "V3")
    },
    "DebugNumericSummaryV2": (
        _KERNELS + "debug_ops.h",
        lambda op: op.get_attr("tensor_debug_mode") in (3, 4),  # CONCISE_HEALTH, FULL_HEALTH
    ),
    "Svd": (_KERNELS + "linalg/svd_op_gpu.cu.cc", lambda op: op.inputs[0].shape[-1] in (None, 1)),
}


class Refusal(NamedTuple):
    """An op TensorFlow would refuse on a GPU under op determinism, and where it was made."""

    op_type: str
    op_name: str
    where: str  # "path/to/file.py:123", the innermost frame outside TensorFlow and Keras.
    source: str  # The TensorFlow kernel source that refuses it.

    def __str__(self):
        return (
            f"{self.where}: {self.op_type} (op {self.op_name!r}) has no deterministic GPU kernel in TensorFlow 2.15 "
            f"({self.source}): place it on the CPU with common.determinism.on_host(), or set DETERMINISTIC = False"
        )


def on_host():
    """The device scope of a deliberate CPU placement: `with determinism.on_host(): ...`.

    For ops with no deterministic GPU kernel whose inputs are small, such as the
    histograms behind the confusion matrix (`metrics.streaming.histogram`). The price is
    one copy of the inputs from the GPU: 8 MiB of int32 ids for a 32 x 256 x 256 batch,
    under 1 ms at PCIe 3.0 x16's ~12 GB/s. Under a distribution strategy the op goes to
    the host of the replica's own task.
    """
    return tf.device("/device:CPU:0")


def _on_cpu(device: str) -> bool:
    return bool(device) and tf.DeviceSpec.from_string(device).device_type == "CPU"


def _is_host_pipeline(op) -> bool:
    """tf.data datasets and iterators: their functions run on the host."""
    return "Dataset" in op.type or "Iterator" in op.type


def _called_functions(op):
    for value in op.node_def.attr.values():
        if value.HasField("func"):
            yield value.func.name
        elif value.HasField("list"):
            yield from (function.name for function in value.list.func)


def _where(op) -> str:
    """`file:line` of the innermost frame that made `op` outside TensorFlow, Keras and this module."""
    library = os.path.dirname(os.path.dirname(tf.__file__))  # site-packages
    frames = [
        frame
        for frame in op.traceback
        if not frame.filename.startswith(library) and os.path.abspath(frame.filename) != os.path.abspath(__file__)
    ]
    if not frames:
        return "<unknown file>"
    frame = frames[-1]
    path = os.path.abspath(frame.filename)
    if path.startswith(REPO_ROOT + os.sep):
        path = os.path.relpath(path, REPO_ROOT)
    return f"{path}:{frame.lineno}"


def _function_graph(graphs, name):
    for graph in graphs:
        function = graph._get_function(name)  # noqa: SLF001  The graph's own function library.
        if function is not None:
            return function.graph
    return None


def gpu_refusals(graph) -> list:
    """The ops of `graph` TensorFlow 2.15 would refuse on a GPU under op determinism.

    Looks at every op outside the tf.data pipeline, in the graph and in the functions
    its ops call, recursively; an op counts as placed on the CPU when its own device,
    or the device of the op calling its function, is a CPU. Returns `Refusal`s in
    graph order, one per op.
    """
    found, seen = [], set()

    def visit(func_graph, graphs, device):
        for op in func_graph.get_operations():
            if _is_host_pipeline(op):
                continue
            op_device = op.device or device
            rule = REFUSED_ON_GPU.get(op.type)
            if rule and not _on_cpu(op_device) and (rule[1] is None or rule[1](op)):
                found.append(Refusal(op.type, op.name, _where(op), rule[0]))
            for name in _called_functions(op):
                key = (name, _on_cpu(op_device))
                inner = _function_graph((func_graph, *graphs), name)
                if key not in seen and inner is not None:
                    seen.add(key)
                    visit(inner, (func_graph, *graphs), op_device)

    visit(graph, (), "")
    return found


def configure(enabled: bool = True):
    """Op determinism on (gin's `DETERMINISTIC`, default) or off; called once per process.

    On: bit-identical reruns on the same machine and software (tested on CPU), and on a
    GPU cuDNN's deterministic algorithms and TensorFlow's deterministic kernels. Off: the
    fastest kernels, run to run differences in the last bits that grow over training.
    """
    if enabled:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()


def enabled() -> bool:
    """Whether op determinism is on in this process."""
    return tf_config.is_op_determinism_enabled()


def describe() -> str:
    """One line: the GPUs TensorFlow sees (or none) and whether op determinism is on."""
    gpus = [device.name.split(":", 1)[1] for device in tf.config.list_physical_devices("GPU")]
    devices = f"{len(gpus)} GPU(s) ({', '.join(gpus)})" if gpus else "no GPU, running on the CPU"
    state = "on" if enabled() else "off (DETERMINISTIC = False)"
    return f"devices: {devices}; op determinism {state}"
