"""Silero VAD (v5/v6, 16 kHz) as a plain numpy forward pass, its weights read from the ONNX file.

Same numbers as onnxruntime on the same file (within float32 rounding) without onnxruntime's memory.
The network per 512-sample chunk: 64 samples of context + the chunk, reflect-padded on the right by
64, an STFT done as a conv with a fixed basis (256 taps, hop 128) → magnitudes (4 frames x 129 bins),
four conv1d+ReLU layers (strides 1, 2, 2, 1) → one 128-vector, an LSTM cell (128), ReLU, a 1x1 conv and
a sigmoid. Buffers and im2col views are laid out once at load: a call is ~30 small in-place numpy ops.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..pcm import RATE
from .onnx_proto import Graph, OnnxFormatError, constants, load_model

CHUNK = 512
CONTEXT = 64
_F32 = np.float32

_BASIS = "stft.forward_basis_buffer"
_ENCODER = tuple(f"encoder.{i}.reparam_conv" for i in range(4))
_RNN = "decoder.rnn."
_HEAD = "decoder.decoder.2"


class SileroModelError(RuntimeError):
    """The Silero model file is missing or is not a Silero VAD ONNX model this code can run."""


def default_model_path() -> Path:
    """The ONNX file shipped in the `silero-vad` wheel (installed without its torch dependency)."""
    try:
        dist = importlib.metadata.distribution("silero-vad")
    except importlib.metadata.PackageNotFoundError:
        raise SileroModelError(
            "Silero model: the silero-vad package is not installed; give a model path"
        ) from None
    return Path(str(dist.locate_file("silero_vad/data/silero_vad.onnx")))


@dataclass(frozen=True)
class _Conv:
    weight: np.ndarray  # (out, in, k)
    bias: np.ndarray | None
    stride: int
    pad: int


@dataclass(frozen=True)
class _Weights:
    stft: _Conv
    encoder: tuple[_Conv, ...]
    w_ih: np.ndarray  # (4H, in), PyTorch gate order i, f, g, o
    w_hh: np.ndarray  # (4H, H)
    b_ih: np.ndarray
    b_hh: np.ndarray
    head_w: np.ndarray  # (1, H, 1)
    head_b: np.ndarray  # (1,)


def _conv_attrs(graph: Graph) -> dict[str, tuple[int, int]]:
    """Conv weight tensor name → (stride, pad), checked to be the plain 1-D kind this code computes."""
    out: dict[str, tuple[int, int]] = {}
    for _g, node in graph.walk():
        if node.op_type != "Conv" or len(node.inputs) < 2:
            continue
        a = node.attrs
        pads = list(a.get("pads", [0, 0]))
        if a.get("group", 1) != 1 or list(a.get("dilations", [1])) != [1] or pads[0] != pads[-1]:
            raise OnnxFormatError(f"conv {node.name!r} is not a plain 1-D conv")
        out[node.inputs[1]] = (int(a.get("strides", [1])[0]), int(pads[0]))
    return out


def _pick_16k(tensors: dict[str, np.ndarray]) -> str:
    """The name prefix of the 16 kHz weights: the one whose STFT basis has 256 taps (129 bins)."""
    for name, arr in tensors.items():
        if name.endswith(_BASIS) and arr.shape == (258, 1, 256):
            return name[: -len(_BASIS)]
    raise OnnxFormatError("no 16 kHz STFT basis (258x1x256): not a Silero VAD v5/v6 model")


def _read_weights(path: Path) -> _Weights:
    model = load_model(path)
    tensors = constants(model.graph)
    attrs = _conv_attrs(model.graph)
    prefix = _pick_16k(tensors)

    def get(key: str) -> np.ndarray:
        arr = tensors.get(prefix + key)
        if arr is None:
            raise OnnxFormatError(f"no tensor {key!r}: not a Silero VAD v5/v6 model")
        return np.asarray(arr, dtype=_F32)

    def conv(key: str, bias: bool) -> _Conv:
        name = prefix + key + ("" if key == _BASIS else ".weight")
        if name not in attrs:
            raise OnnxFormatError(f"no conv uses {name!r}")
        stride, pad = attrs[name]
        return _Conv(get(name[len(prefix) :]), get(key + ".bias") if bias else None, stride, pad)

    w = _Weights(
        stft=conv(_BASIS, bias=False),
        encoder=tuple(conv(k, bias=True) for k in _ENCODER),
        w_ih=get(_RNN + "weight_ih"),
        w_hh=get(_RNN + "weight_hh"),
        b_ih=get(_RNN + "bias_ih"),
        b_hh=get(_RNN + "bias_hh"),
        head_w=get(_HEAD + ".weight"),
        head_b=get(_HEAD + ".bias"),
    )
    _check_shapes(w)
    return w


def _check_shapes(w: _Weights) -> None:
    """The layers must chain: STFT bins → encoder → LSTM → head, so a call cannot fail half way."""
    c = w.stft.weight.shape[0] // 2
    for i, conv in enumerate(w.encoder):
        c_out, c_in, _k = conv.weight.shape
        if c_in != c or conv.bias is None or conv.bias.shape != (c_out,):
            raise OnnxFormatError(f"encoder layer {i} has shape {conv.weight.shape}, expected {c} inputs")
        c = c_out
    h4, hidden = w.w_hh.shape
    got = (w.w_ih.shape, w.w_hh.shape, w.b_ih.shape, w.b_hh.shape, w.head_w.shape, w.head_b.shape)
    want = ((h4, c), (4 * hidden, hidden), (h4,), (h4,), (1, hidden, 1), (1,))
    if got != want:
        raise OnnxFormatError("LSTM or head weights do not fit the encoder: not a Silero VAD v5/v6 model")


def _load_weights(path: str | os.PathLike[str]) -> _Weights:
    """Read and check the 16 kHz weights; any problem is one `SileroModelError` line naming the file."""
    p = Path(path)
    try:
        return _read_weights(p)
    except FileNotFoundError:
        raise SileroModelError(f"Silero model {p}: no such file") from None
    except OSError as e:
        raise SileroModelError(f"Silero model {p}: cannot read ({e.strerror or e})") from None
    except (OnnxFormatError, ValueError, TypeError, IndexError, KeyError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SileroModelError(f"Silero model {p}: {first}") from None


class _ConvLayer:
    """conv1d + bias + ReLU over time-major rows, as one BLAS matmul on a contiguous im2col copy.

    Taps that only ever see the zero padding are dropped (the last two layers have a single output),
    and the bias rides in the matmul as a column of ones.
    """

    def __init__(self, conv: _Conv, src: np.ndarray, dst: np.ndarray) -> None:
        c_out, c_in, k = conv.weight.shape
        t_out, s, p = dst.shape[0], conv.stride, conv.pad
        t_in = src.shape[0] - 2 * p  # src: zero-padded rows (t_in + 2p, c_in), contiguous
        lo = min(max(0, p - t * s) for t in range(t_out))
        hi = max(min(k - 1, p + t_in - 1 - t * s) for t in range(t_out))
        taps = hi - lo + 1
        flat = src.reshape(-1)[lo * c_in :]
        self._win = sliding_window_view(flat, taps * c_in)[:: s * c_in][:t_out]
        self._cols = np.ones((t_out, taps * c_in + 1), _F32)
        self._cols_x = self._cols[:, :-1]
        # A window row is [tap lo: ch 0..c_in, tap lo+1: ..., ...], then the 1 for the bias.
        w = conv.weight[:, :, lo : hi + 1].transpose(2, 1, 0).reshape(taps * c_in, c_out)
        assert conv.bias is not None
        self._w = np.ascontiguousarray(np.concatenate([w, conv.bias[None, :]]), dtype=_F32)
        self._zero = np.zeros_like(dst)
        self._dst = dst

    def __call__(self) -> None:
        np.copyto(self._cols_x, self._win)
        np.matmul(self._cols, self._w, out=self._dst)
        np.maximum(self._dst, self._zero, out=self._dst)


class NumpySileroJudge:
    """Speech probability of each 512-sample chunk at 16 kHz, stateful like Silero's reference usage."""

    chunk_samples: int = CHUNK

    def __init__(self, model_path: str | os.PathLike[str] | None = None) -> None:
        path = default_model_path() if model_path is None else Path(model_path)
        w = _load_weights(path)
        n_fft, hop = w.stft.weight.shape[-1], w.stft.stride
        bins = w.stft.weight.shape[0] // 2
        pad_right = n_fft // 4  # Silero's STFT reflect-pads the right end by a quarter window
        self._audio = np.zeros(CONTEXT + CHUNK + pad_right, _F32)
        n = CONTEXT + CHUNK
        # Right reflect padding: padded[n + j] = x[n - 2 - j].
        self._reflect_src = self._audio[n - 2 : n - 2 - pad_right : -1]
        self._reflect_dst = self._audio[n:]
        self._frames = sliding_window_view(self._audio, n_fft)[::hop]  # a view: refilled in place
        self._basis = np.ascontiguousarray(w.stft.weight[:, 0, :].T)  # (n_fft, 2*bins)
        n_frames = self._frames.shape[0]
        self._spec = np.empty((n_frames, 2 * bins), _F32)
        self._re, self._im = self._spec[:, :bins], self._spec[:, bins:]

        # Zero-padded time-major buffers between layers; each layer writes the next one's middle rows.
        layers: list[_ConvLayer] = []
        t, c = n_frames, bins
        src = np.zeros((t + 2 * w.encoder[0].pad, c), _F32)
        self._mag = src[w.encoder[0].pad : w.encoder[0].pad + t]
        hidden = w.w_hh.shape[1]
        self._xh = np.zeros(w.w_ih.shape[1] + hidden + 1, _F32)  # [x; h; 1]: one matmul for the cell
        self._xh[-1] = 1.0
        for i, conv in enumerate(w.encoder):
            c_out, _c_in, k = conv.weight.shape
            t_out = (t + 2 * conv.pad - k) // conv.stride + 1
            if i + 1 < len(w.encoder):
                p = w.encoder[i + 1].pad
                nxt = np.zeros((t_out + 2 * p, c_out), _F32)
                dst = nxt[p : p + t_out]
            else:
                if t_out != 1:
                    raise SileroModelError(f"Silero model {path}: encoder gives {t_out} frames, not 1")
                dst = self._xh[:c_out].reshape(1, c_out)
                nxt = dst
            layers.append(_ConvLayer(conv, src, dst))
            src, t = nxt, t_out
        self._layers = tuple(layers)

        # LSTM cell: gates = [W_ih W_hh b] @ [x; h; 1], rows reordered i, f, o, g so the three sigmoids
        # are one slice; sigmoid(z) = (1 + tanh(z/2)) / 2, so those rows are halved and one tanh does all.
        H = hidden
        order = np.r_[0 : 2 * H, 3 * H : 4 * H, 2 * H : 3 * H]
        scale = np.r_[np.full(3 * H, 0.5), np.ones(H)].astype(_F32)
        wcat = np.concatenate([w.w_ih, w.w_hh, (w.b_ih + w.b_hh)[:, None]], axis=1)
        self._w_lstm = np.ascontiguousarray((wcat[order] * scale[:, None]).T, dtype=_F32)  # (in+H+1, 4H)
        self._gates = np.empty(4 * H, _F32)
        self._sig, self._g = self._gates[: 3 * H], self._gates[3 * H :]
        self._i, self._f, self._o = (self._gates[j * H : (j + 1) * H] for j in range(3))
        self._h = self._xh[-H - 1 : -1]
        self._c = np.zeros(H, _F32)
        self._tmp = np.empty(H, _F32)
        self._head_w = w.head_w.reshape(-1).copy()
        self._head_b = float(w.head_b.reshape(-1)[0])

    def reset(self) -> None:
        """Forget the context and the LSTM state (a new stream)."""
        self._audio[:] = 0.0
        self._xh[:-1] = 0.0
        self._c[:] = 0.0

    def __call__(self, chunk: np.ndarray) -> float:
        x = np.asarray(chunk)
        if x.dtype.kind != "f":  # int16 PCM would pass silently with the wrong scale
            raise TypeError(f"Silero judge takes float samples in [-1, 1), got {x.dtype}")
        if x.size != CHUNK:
            raise ValueError(f"Silero judge takes {CHUNK} samples at {RATE} Hz, got {x.size}")
        a = self._audio
        a[:CONTEXT] = a[CHUNK : CHUNK + CONTEXT]  # the previous chunk's last 64 samples
        a[CONTEXT : CONTEXT + CHUNK] = x.reshape(-1)
        np.copyto(self._reflect_dst, self._reflect_src)
        np.matmul(self._frames, self._basis, out=self._spec)
        # |X| as ONNX computes it (square, add, sqrt), cheaper than hypot.
        np.square(self._spec, out=self._spec)
        np.add(self._re, self._im, out=self._mag)
        np.sqrt(self._mag, out=self._mag)
        for layer in self._layers:
            layer()

        g, c, tmp = self._gates, self._c, self._tmp
        np.matmul(self._xh, self._w_lstm, out=g)
        np.tanh(g, out=g)
        self._sig += 1.0
        self._sig *= 0.5  # now sigmoid(i), sigmoid(f), sigmoid(o), tanh(g)
        c *= self._f
        np.multiply(self._i, self._g, out=tmp)
        c += tmp
        np.tanh(c, out=tmp)
        np.multiply(self._o, tmp, out=self._h)
        z = float(np.dot(self._head_w, np.maximum(self._h, 0.0))) + self._head_b
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
