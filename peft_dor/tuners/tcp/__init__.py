from .config import TCPConfig
from .layer import TCPClassTokenLayer, TCPContextLayer
from .model import TCPModel

__all__ = ["TCPClassTokenLayer", "TCPConfig", "TCPContextLayer", "TCPModel"]
