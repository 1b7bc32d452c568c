"""The neural judge behind webrtcvad: a small Protocol, Silero through onnxruntime, and the factory."""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..config import ConfigError, GateSettings
from ..pcm import RATE

log = logging.getLogger(__name__)

CONTEXT = 64  # samples of the previous chunk Silero sees in front of each new one (16 kHz)


class SpeechJudge(Protocol):
    """Speech probability of consecutive chunks; keeps its own context and recurrent state."""

    chunk_samples: int

    def reset(self) -> None: ...

    def __call__(self, chunk: np.ndarray) -> float:
        """`chunk`: float32 samples in [-1, 1), exactly `chunk_samples` long, following the last one."""
        ...


class JudgeUnavailable(ConfigError):
    """No configured judge backend can run here; the message is one line naming gate.judge_backend."""


def silero_onnx_path() -> Path:
    """The ONNX file shipped in the `silero-vad` distribution (found without importing it: that needs torch)."""
    try:
        dist = importlib.metadata.distribution("silero-vad")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError("the silero-vad package is not installed") from None
    path = Path(str(dist.locate_file("silero_vad/data/silero_vad.onnx")))
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the silero-vad package")
    return path


class OnnxSileroJudge:
    """Silero VAD v5 (16 kHz, 512-sample chunks) run by onnxruntime on one thread."""

    chunk_samples = 512

    def __init__(self, model_path: Path | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        path = model_path if model_path is not None else silero_onnx_path()
        self._session: Any = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._input = np.zeros((1, CONTEXT + self.chunk_samples), dtype=np.float32)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._sr = np.array(RATE, dtype=np.int64)

    def reset(self) -> None:
        self._input[:] = 0.0
        self._state = np.zeros((2, 1, 128), dtype=np.float32)

    def __call__(self, chunk: np.ndarray) -> float:
        if chunk.shape != (self.chunk_samples,):
            raise ValueError(f"Silero needs chunks of {self.chunk_samples} samples (got {chunk.shape})")
        self._input[0, CONTEXT:] = chunk
        out, self._state = self._session.run(None, {"input": self._input, "state": self._state, "sr": self._sr})
        # The next chunk sees the end of this one as its context.
        self._input[0, :CONTEXT] = self._input[0, -CONTEXT:]
        return float(out[0, 0])


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def make_judge(settings: GateSettings) -> SpeechJudge | None:
    """The configured judge, or None when `gate.judge` is `none` (webrtcvad alone)."""
    if settings.judge == "none":
        return None
    try:
        if settings.judge_backend == "numpy":
            from .silero_numpy import NumpySileroJudge

            judge: SpeechJudge = NumpySileroJudge()
            return judge
        return OnnxSileroJudge()
    except Exception as e:  # ImportError, a missing or corrupt model file, onnxruntime's own errors
        raise JudgeUnavailable(
            f"config: gate.judge_backend = {settings.judge_backend!r} cannot run here ({_first_line(e)})"
        ) from None
