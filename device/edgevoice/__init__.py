"""edgevoice: the software inside a Raspberry Pi smart speaker."""

__version__ = "0.1.0"
