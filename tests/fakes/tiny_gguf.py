"""A tiny random-weight llama GGUF that llama.cpp really loads: 2 layers, 32 wide, llama's SPM vocabulary.

The vocabulary is read from the vocab-only GGUF that llama-cpp-python's source tree ships
(`vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf`), fetched once from PyPI's sdist and cached.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VOCAB_NAME = "ggml-vocab-llama-spm.gguf"
CACHE_DIR = Path.home() / ".cache" / "llm-manager-tests"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def vocab_file() -> Path:
    cached = CACHE_DIR / VOCAB_NAME
    if cached.exists():
        return cached
    version = importlib.metadata.version("llama-cpp-python")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={version}", "-d", tmp], check=True, timeout=600)
        (archive,) = Path(tmp).glob("llama_cpp_python-*.tar.gz")
        with tarfile.open(archive) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(f"vendor/llama.cpp/models/{VOCAB_NAME}"))
            CACHE_DIR.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(tar.extractfile(member).read())
    return cached


def _vocab():
    from gguf import GGUFReader

    reader = GGUFReader(str(vocab_file()))
    fields = reader.fields

    def array(name):
        field = fields[name]
        return [field.parts[index] for index in field.data]

    tokens = [bytes(part).decode("utf-8") for part in array("tokenizer.ggml.tokens")]
    scores = [float(part[0]) for part in array("tokenizer.ggml.scores")]
    types = [int(part[0]) for part in array("tokenizer.ggml.token_type")]
    return tokens, scores, types


def write_tiny_gguf(path: Path, chat_template: str | None = CHAT_TEMPLATE, seed: int = 0, pooled: bool = False,
                    bos_id: int = 1, eos_id: int = 2) -> Path:
    """`pooled`: the header names a pooling type (mean), so llama.cpp answers one embedding per input, not one per
    token. `bos_id`, `eos_id`: which tokens of the vocabulary the header names as BOS and EOS."""
    import numpy as np
    from gguf import GGUFWriter, PoolingType

    tokens, scores, types = _vocab()
    n_vocab, n_embd, n_ff, n_layer, n_head = len(tokens), 32, 64, 2, 4
    rng = np.random.default_rng(seed)

    def weights(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer = GGUFWriter(str(path), "llama")
    writer.add_name("tiny-test-llama")
    if pooled:
        writer.add_pooling_type(PoolingType.MEAN)
    writer.add_context_length(2048)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(bos_id)
    writer.add_eos_token_id(eos_id)
    writer.add_unk_token_id(0)
    if chat_template:
        writer.add_chat_template(chat_template)
    writer.add_tensor("token_embd.weight", weights(n_vocab, n_embd))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", weights(n_vocab, n_embd))
    for layer in range(n_layer):
        prefix = f"blk.{layer}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{prefix}.{name}.weight", weights(n_embd, n_embd))
        writer.add_tensor(f"{prefix}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"{prefix}.ffn_gate.weight", weights(n_ff, n_embd))
        writer.add_tensor(f"{prefix}.ffn_up.weight", weights(n_ff, n_embd))
        writer.add_tensor(f"{prefix}.ffn_down.weight", weights(n_embd, n_ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
