"""Signals the downloads app sends to the apps above it, which connect to them in their AppConfig.ready."""

from django.dispatch import Signal

# Sent (source=, model_id=) before a model's files are removed; a receiver raises ApiError to refuse,
# e.g. MODEL_IN_USE while a deployment runs the model. Sent with `send`, so a refusal propagates.
model_files_removing = Signal()
