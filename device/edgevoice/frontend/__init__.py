"""The audio front end between capture and the gate: echo cancellation against what the speaker played."""

from .aec import EchoCancel
from .farend import FarEnd

__all__ = ["EchoCancel", "FarEnd"]
