"""TCP: textual-knowledge class tokens injected deep in the text tower."""

from ...registry import MethodSpec, register_method
from .config import TCPConfig
from .layer import TCPClassTokenLayer, TCPContextLayer
from .model import TCPModel

register_method(MethodSpec("TCP", TCPConfig, TCPModel, "TCP", template_variant="tcp"))

__all__ = ["TCPClassTokenLayer", "TCPConfig", "TCPContextLayer", "TCPModel"]
