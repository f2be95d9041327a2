"""The sentence-embedding model: the published weights only, the published similarities, computed once."""
import sqlite3
import zipfile
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from bot.embedding import MODEL_SHA256, ModelFileError, load_encoder, model_zip_path, read_model_files
from bot.responder import ChatResponder
from bot.semantic import load_prompt_embeddings


def test_embeddings_match_the_published_similarities():
    """sentence-transformers' quick-start example for all-MiniLM-L6-v2 and the similarities it prints."""
    vectors = load_encoder().encode(["The weather is lovely today.", "It's so sunny outside!",
                                     "He drove to the stadium."])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarities = vectors @ vectors.T
    assert similarities[0, 1] == pytest.approx(0.6660, abs=1e-3)
    assert similarities[0, 2] == pytest.approx(0.1046, abs=1e-3)
    assert similarities[1, 2] == pytest.approx(0.1411, abs=1e-3)


def test_paraphrases_are_closer_than_unrelated_sentences():
    encoder = load_encoder()
    refund, money_back, weather = encoder.encode(
        ["Can I get a refund?", "I want my money back", "What will the weather be like tomorrow?"])
    assert refund @ money_back > 0.5 > refund @ weather + 0.3


def test_altered_weights_are_refused(tmp_path: Path):
    altered = tmp_path / "model.zip"
    with zipfile.ZipFile(model_zip_path()) as original, zipfile.ZipFile(altered, "w") as copy:
        for name in original.namelist():
            data = original.read(name)
            if name.endswith("model.safetensors"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            copy.writestr(name, data)
    with pytest.raises(ModelFileError, match=f"expected {MODEL_SHA256}"):
        read_model_files(altered)


def test_prompt_embeddings_are_stored_at_training(trained_db: Path):
    with closing(sqlite3.connect(trained_db)) as connection:
        prompts = {text for (text,) in connection.execute(
            "SELECT DISTINCT in_response_to FROM statement WHERE in_response_to IS NOT NULL")}
    from sqlalchemy import create_engine
    stored = load_prompt_embeddings(create_engine(f"sqlite:///{trained_db}"))
    assert prompts <= set(stored) and len(prompts) > 900
    assert np.allclose(stored["What is AI?"], load_encoder().encode(["What is AI?"])[0], atol=1e-5)


def test_a_reply_embeds_the_message_only(responder: ChatResponder, monkeypatch: pytest.MonkeyPatch):
    """The corpus is never embedded per message: a corpus prompt costs no encoding, a new message one."""
    encoder = load_encoder()
    embedded: list[list[str]] = []
    original = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda texts, **kw: embedded.append(list(texts)) or original(texts, **kw))
    responder.reply("What is AI?", session_id="embed-once")
    assert embedded == []
    responder.reply("Tell me what artificial intelligence really is, please", session_id="embed-once")
    assert embedded == [["Tell me what artificial intelligence really is, please"]]
