"""A tiny random llama for `transformers serve`: a tokenizer read out of the tiny GGUF, a 2-layer 32-wide model."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.tiny_gguf import CHAT_TEMPLATE


def write_tiny_transformers_model(folder: Path, gguf: Path) -> dict[str, bytes]:
    """Save the model into `folder`; returns its files by name (to publish on the fake hub)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
