"""The voice-activity gate: webrtcvad + Silero cascade, smoothing, pre-roll, hangover, push-to-talk.

Pure code driven frame by frame (see DESIGN.md: it never touches ALSA or the daemon).
"""

from .events import GateEvent, TurnEnded, TurnFrame, TurnStarted
from .gate import Gate, GateState, make_gate
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
    "make_gate",
    "make_judge",
]
