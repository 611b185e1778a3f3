"""labservice: complete blood count interpretation. Importing this package imports nothing heavy."""

__version__ = "0.1.0"
