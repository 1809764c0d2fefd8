"""TCP: textual-knowledge class tokens injected deep in the text tower."""

from ...registry import MethodSpec, register_method
from .config import TCPConfig
from .layer import TCPClassTokenLayer, TCPContextLayer
from .model import TCPModel
from .templates import TEMPLATES

register_method(MethodSpec("TCP", TCPConfig, TCPModel, "TCP", templates=TEMPLATES))

__all__ = ["TCPClassTokenLayer", "TCPConfig", "TCPContextLayer", "TCPModel"]
