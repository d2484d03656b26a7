"""The package's one exception root. Each domain module subclasses it (mixing in a builtin where useful).

Messages say what went wrong with the values involved and what to do next.
"""


class FedchainError(Exception):
    """Raised for any fedchain failure; catch this to handle them all."""


class ConfigError(FedchainError, ValueError):
    """Raised when a setting, file or command-line value is invalid."""
