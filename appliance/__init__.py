"""Face-recognition access appliance: edge daemon, secure channel and central matcher."""

__version__ = "0.1.0"
