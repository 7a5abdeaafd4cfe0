"""One way to open an ONNX model on onnxruntime: the job's threads, quiet logs, CUDA first when
this onnxruntime build has it (the provider that really runs is ``session.get_providers()[0]``)."""

from __future__ import annotations

from pathlib import Path


def onnx_session(model_path: str | Path, threads: int, providers: list[str] | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if providers is None:
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
