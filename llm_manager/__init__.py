"""LLM Manager: find, download, deploy and talk to large language models."""

__version__ = "1.0.0"
