"""Herald: an event-triggered messaging pipeline."""

__version__ = "0.1.0"
