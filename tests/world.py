"""The models the stand-in sources hold in tests: a small, known world to search and download."""

from __future__ import annotations

import json
import random

from tests.fakes.hub import FakeHub
from tests.fakes.ollama_library import LibraryModel

DIALOGPT_WEIGHTS = bytes(range(256)) * 16  # 4 KiB: an LFS file
BIG_WEIGHTS = random.Random(1).randbytes(8 * 1024 * 1024)  # split into parts when the threshold is 1 MiB
TINY_GGUF_Q4 = b"GGUF" + bytes(3000)
TINY_GGUF_Q8 = b"GGUF" + bytes(5000)

LIBRARY_MODELS = [
    LibraryModel("llama3.2", "Small Llama models for chat and tool use on modest hardware.", ["tools"], ["1b", "3b"],
                 pulls="2.5M", tags=["latest", "1b", "3b"]),
    LibraryModel("nomic-embed-text", "An open text embedding model with a long context.", ["embedding"], [],
                 pulls="40.1M", tags=["latest", "v1.5"]),
    LibraryModel("tiny-test", "A tiny llama for the tests, with a GGUF that really loads.", [], ["15m"],
                 pulls="12", tags=["latest", "q4"]),
]

TINY_OLLAMA_CONFIG = {"model_format": "gguf", "model_family": "llama", "model_families": ["llama"],
                      "model_type": "15M", "file_type": "Q4_K_M", "architecture": "amd64", "os": "linux"}
TINY_OLLAMA_LAYERS = [
    ("model", b"GGUF" + bytes(range(256)) * 20),
    ("template", b"{{ .Prompt }}"),
    ("params", json.dumps({"stop": ["</s>"]}).encode()),
]


def populate_hub(hub: FakeHub) -> FakeHub:
    hub.add_repo(
        "microsoft/DialoGPT-medium",
        files={"config.json": b'{"model_type": "gpt2"}', "pytorch_model.bin": DIALOGPT_WEIGHTS,
               "README.md": b"# DialoGPT"},
        pipeline_tag="conversational", tags=["conversational", "pytorch", "transformers"],
        downloads=50000, likes=1200, trending_score=5,
        card_data={"license": "mit", "description": "A conversational response generation model"},
        safetensors_total=117_000_000,
    )
    hub.add_repo(
        "TheBloke/TinyLlama-GGUF",
        files={"tinyllama.Q4_K_M.gguf": TINY_GGUF_Q4, "tinyllama.Q8_0.gguf": TINY_GGUF_Q8, "README.md": b"# TinyLlama"},
        pipeline_tag="text-generation", library_name="gguf", tags=["gguf", "llama", "text-generation"],
        downloads=9000, likes=300, trending_score=50,
        gguf={"total": 1_100_000_000, "architecture": "llama", "context_length": 2048},
    )
    hub.add_repo("meta-llama/Gated-Llama", files={"config.json": b"{}", "model.bin": DIALOGPT_WEIGHTS[::-1]},
                 gated="manual", downloads=100, likes=10)
    hub.add_repo("test-org/big-model", files={"config.json": b'{"model_type": "llama"}', "model.safetensors": BIG_WEIGHTS},
                 downloads=5, likes=1)
    hub.add_repo("evil-org/traversal", files={"config.json": b"{}", "../../evil.bin": b"x" * 2048}, downloads=1)
    for index in range(30):
        hub.add_repo(
            f"filler-org/filler-model-{index:02d}",
            files={"config.json": b"{}"},
            pipeline_tag="text-classification" if index % 2 else "fill-mask",
            tags=["filler"], downloads=1000 - index, likes=index, trending_score=index / 10,
        )
    return hub


def populate_registry(registry) -> None:
    for tag in ("latest", "q4"):
        registry.push_ollama_model("tiny-test", tag, TINY_OLLAMA_LAYERS, TINY_OLLAMA_CONFIG)


MODELSCOPE_TINY_REPO = "modelscope-org/tiny-llama-GGUF"


def populate_modelscope(hub) -> None:
    hub.add_repo("qwen/Qwen2-0.5B-Instruct",
                 files={"config.json": b'{"model_type": "qwen2"}', "model.safetensors": DIALOGPT_WEIGHTS,
                        "README.md": b"# Qwen2"},
                 pipeline_tag="text-generation", tags=["qwen", "chat"], downloads=120000, likes=800,
                 card_data={"license": "apache-2.0", "description": "通义千问 Qwen2 0.5B 指令模型"})
    hub.add_repo("damo/nlp_structbert_backbone", files={"config.json": b"{}", "pytorch_model.bin": DIALOGPT_WEIGHTS[::-1]},
                 pipeline_tag="fill-mask", tags=["structbert"], downloads=3000, likes=20,
                 card_data={"description": "StructBERT, known only to the older API"})
    hub.legacy_only.add("damo/nlp_structbert_backbone")
