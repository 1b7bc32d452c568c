"""The voice-activity gate: webrtcvad + Silero cascade, smoothing, pre-roll, hangover, push-to-talk, wake word.

Pure code driven frame by frame (see DESIGN.md: it never touches ALSA or the daemon).
"""

from .events import GateEvent, TurnEnded, TurnFrame, TurnStarted
from .gate import Gate, GateState, WakeDetector, make_gate
from .judge import JudgeUnavailable, OnnxSileroJudge, SpeechJudge, make_judge

__all__ = [
    "Gate",
    "GateEvent",
    "GateState",
    "JudgeUnavailable",
    "OnnxSileroJudge",
    "SpeechJudge",
    "TurnEnded",
    "TurnFrame",
    "TurnStarted",
    "WakeDetector",
    "make_gate",
    "make_judge",
]
