"""radstream: clinical AI for radiology, event-driven, behind the hospital firewall."""

__version__ = "0.1.0"
