"""The ground every app stands on: the envelope, errors, API keys, the lean middleware stack, schema and console
helpers, safe paths and host probes."""

__version__ = "1.0.0"
