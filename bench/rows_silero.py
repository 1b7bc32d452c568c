"""Silero in numpy (NumpySileroJudge) against onnxruntime (1 thread) on the same ONNX file and chunks.

CPU per second of audio is measured in this process, alternating the two runners and keeping each
one's best round (the machine is shared). Import+load time and the RSS a runner adds are measured in
fresh subprocesses: baseline after `import numpy, edgevoice.gate`, then import + load + 1 s of audio
(peak RSS, VmHWM).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from bench.common import Row, child_json
from edgevoice.pcm import RATE

CHUNK = 512

# Runs in a fresh interpreter: argv = kind (numpy|onnx), raw float32 audio path. Peak RSS is VmHWM, not
# ru_maxrss: Linux carries ru_maxrss across fork+exec, so a child of this big process starts at our peak.
_CHILD = r"""
import numpy as np
import edgevoice.gate
from edgevoice.gate.silero_numpy import default_model_path
from edgevoice.pcm import RATE
kind, audio = sys.argv[1], np.fromfile(sys.argv[2], np.float32)[:RATE]  # 1 s
path = default_model_path()
base = hwm_kb()
t0 = time.perf_counter()
if kind == "numpy":
    from edgevoice.gate.silero_numpy import NumpySileroJudge
    judge = NumpySileroJudge(path)
    step = judge
else:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.zeros((1, 576), np.float32)
    io = {"input": x, "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(RATE, np.int64)}
    def step(c):
        x[0, 64:] = c
        out, io["state"] = sess.run(None, io)
        x[0, :64] = x[0, -64:]
        return float(out[0, 0])
load = time.perf_counter() - t0
for i in range(0, len(audio) - 511, 512):
    step(audio[i : i + 512])
peak = hwm_kb()
print(json.dumps({"load_s": load, "rss_kb": peak - base}))
"""


def _make_audio(d: Path, seconds: float) -> np.ndarray:
    """espeak-ng speech in pink noise, looped to `seconds`: the judge's real input, denormals and all."""
    wav, speech, noise = d / "s.wav", d / "s.f32", d / "n.f32"
    fmt = ["-r", str(RATE), "-c", "1", "-b", "32", "-e", "floating-point", "-t", "raw"]
    text = "Hello there. What is the weather like in Paris tomorrow morning? Turn the kitchen lights off."
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    subprocess.run(["sox", str(wav), *fmt, str(speech)], check=True, capture_output=True)
    subprocess.run(
        ["sox", "-n", *fmt, str(noise), "synth", f"{seconds:.1f}", "pinknoise", "vol", "0.05"],
        check=True,
        capture_output=True,
    )
    s = np.fromfile(speech, np.float32)
    s = np.concatenate([s, np.zeros(RATE // 2, np.float32)])
    n = np.fromfile(noise, np.float32)
    return (np.resize(s, len(n)) + n).astype(np.float32)


def _onnx_step(path: Path) -> Callable[[np.ndarray], float]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.zeros((1, 64 + CHUNK), np.float32)
    feeds = {"input": x, "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(RATE, np.int64)}

    def step(chunk: np.ndarray) -> float:
        x[0, 64:] = chunk
        out, feeds["state"] = sess.run(None, feeds)
        x[0, :64] = x[0, -64:]
        return float(out[0, 0])

    return step


def _cpu_ms_per_s(step: Callable[[np.ndarray], float], chunks: list[np.ndarray]) -> float:
    t0 = time.process_time()
    for c in chunks:
        step(c)
    return (time.process_time() - t0) * 1000 / (len(chunks) * CHUNK / RATE)


def rows(quick: bool) -> Iterable[Row]:
    return list(_rows(quick))


def _rows(quick: bool) -> Iterator[Row]:
    from edgevoice.gate.silero_numpy import NumpySileroJudge, default_model_path

    seconds, rounds, children = (4.0, 3, 2) if quick else (20.0, 5, 5)
    path = default_model_path()
    with tempfile.TemporaryDirectory(prefix="bench-silero-") as tmp:
        audio = _make_audio(Path(tmp), seconds)
        audio_path = Path(tmp) / "audio.f32"
        audio.tofile(audio_path)
        chunks = [audio[i : i + CHUNK] for i in range(0, len(audio) - CHUNK + 1, CHUNK)]

        ours, ref = NumpySileroJudge(path), _onnx_step(path)
        for c in chunks[:30]:  # warm both up
            ours(c)
            ref(c)
        cpu_np, cpu_ort = float("inf"), float("inf")
        for _ in range(rounds):
            ours.reset()
            cpu_np = min(cpu_np, _cpu_ms_per_s(ours, chunks))
            cpu_ort = min(cpu_ort, _cpu_ms_per_s(ref, chunks))
        yield Row("silero numpy: CPU per s of audio", cpu_np, "ms", cpu_ort, "ratio <= 1.5")
        yield Row("silero numpy: CPU per s of audio, absolute", cpu_np, "ms", cpu_ort, "value <= 4")

        # Fresh interpreters: best of a few for time, the median for memory (it barely moves).
        runs = {k: [child_json(_CHILD, k, str(audio_path)) for _ in range(children)] for k in ("numpy", "onnx")}
        load = {k: min(r["load_s"] for r in v) * 1000 for k, v in runs.items()}
        rss = {k: float(np.median([r["rss_kb"] for r in v])) / 1024 for k, v in runs.items()}
        yield Row("silero numpy: import + load time", load["numpy"], "ms", load["onnx"], "ratio <= 1.5")
        yield Row(
            "silero numpy: RSS added, import+load+1 s", rss["numpy"], "MB", rss["onnx"], "ratio <= 0.25"
        )
