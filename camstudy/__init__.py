"""The ``camstudy`` command line (subcommands for every stage) and shared errors."""

__version__ = "0.1.0"
