"""LLM Manager: find, download, deploy and talk to large language models.

This package holds the settings, the URLs and the ASGI application; the apps hold the rest (docs/architecture.md).
"""
