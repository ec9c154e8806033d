"""The benchmark of issue #7: `python -m bench` measures portabot beside its peers in one run."""

__version__ = "0.1.0"
