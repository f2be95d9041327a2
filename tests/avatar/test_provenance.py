"""C2PA provenance: real signing and verification with c2pa-python, on small files made here."""
import shutil
import stat
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from avatar.cli import main
from avatar.export import SAMPLES_PER_FRAME, Cue, ExportOptions, _Mp4Writer, write_webvtt
from avatar.provenance import (CA_FILE, CHAIN_FILE, KEY_FILE, TRAINED_ALGORITHMIC_MEDIA, ContentInfo,
                               CredentialError, load_credentials, sidecar_path, sign_file, verify_file)
from avatar.render import to_i420

INFO = ContentInfo(title="test dialogue", avatar_name="Ada",
                   consent=("subject: Ada Example, consent file sha256 " + "ab" * 32,))


@pytest.fixture(autouse=True)
def c2pa_dir(tmp_path, monkeypatch) -> Path:
    """Each test gets its own local CA folder and no credentials from the environment."""
    for name in ("AVATAR_C2PA_CERT", "AVATAR_C2PA_KEY", "AVATAR_C2PA_CA"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "c2pa"
    monkeypatch.setenv("AVATAR_C2PA_DIR", str(folder))
    return folder


def _frames(n: int = 12) -> list[np.ndarray]:
    yy, xx = np.mgrid[0:64, 0:64]
    return [np.dstack([(xx * 4 + 20 * k) % 256, (yy * 4) % 256, np.full_like(xx, 15 * k)]).astype(np.uint8)
            for k in range(n)]


@pytest.fixture
def mp4(tmp_path) -> Path:
    """A few frames of H.264 + AAC written by the export's own writer."""
    path = tmp_path / "clip.mp4"
    writer = _Mp4Writer(path, (64, 64), ExportOptions())
    for frame in _frames():
        writer.write(to_i420(frame), np.zeros(SAMPLES_PER_FRAME, np.int16))
    writer.close()
    return path


def _decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _mdat_payload(data: bytes) -> tuple[int, int]:
    """Start and end of the top-level mdat box's payload (the coded frames)."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[pos + 8:pos + 16])[0], 16
        elif size == 0:
            size = len(data) - pos
        if kind == b"mdat":
            return pos + header, pos + size
        pos += size
    raise AssertionError("no mdat box")


def test_signed_mp4_is_trusted_with_the_local_ca_and_still_plays(mp4):
    before = _decoded_frames(mp4)
    assert verify_file(mp4).state == "unsigned"
    assert sign_file(mp4, INFO) == mp4
    result = verify_file(mp4)
    assert result.state == "Trusted" and result.intact and result.trusted, result.problems
    assert result.problems == []
    assert result.title == "test dialogue"
    assert result.digital_source_type == TRAINED_ALGORITHMIC_MEDIA
    assert result.avatar_name == "Ada" and result.consent == INFO.consent
    assert "avatar-service" in result.signer
    after = _decoded_frames(mp4)
    assert len(after) == len(before) and all(np.array_equal(a, b) for a, b in zip(after, before))
    assert sorted(p.name for p in mp4.parent.iterdir()) == ["c2pa", "clip.mp4"]   # no temporary file left


def test_one_changed_byte_of_video_data_is_reported_as_tampered(mp4, capsys):
    sign_file(mp4, INFO)
    data = bytearray(mp4.read_bytes())
    start, end = _mdat_payload(bytes(data))
    assert end - start > 100
    data[(start + end) // 2] ^= 0x01
    mp4.write_bytes(bytes(data))

    result = verify_file(mp4)
    assert not result.intact and not result.trusted and result.state == "Invalid"
    assert any("mismatch" in p for p in result.problems), result.problems
    assert main(["verify", str(mp4)]) == 1
    out = capsys.readouterr().out
    assert "tampered" in out and "mismatch" in out


def test_without_the_ca_as_anchor_the_signature_is_valid_but_untrusted(mp4, c2pa_dir, tmp_path, monkeypatch,
                                                                      capsys):
    sign_file(mp4, INFO)
    ca = tmp_path / "ca.pem"
    shutil.copy(c2pa_dir / CA_FILE, ca)
    monkeypatch.setenv("AVATAR_C2PA_DIR", str(tmp_path / "elsewhere"))   # no local CA to fall back on

    result = verify_file(mp4)
    assert result.state == "Valid" and result.intact and not result.trusted
    assert any("signingCredential.untrusted" in p for p in result.problems)
    assert main(["verify", str(mp4)]) == 0
    assert "untrusted signer" in capsys.readouterr().out

    assert verify_file(mp4, ca=ca).state == "Trusted"
    assert main(["verify", str(mp4), "--ca", str(ca)]) == 0
    out = capsys.readouterr().out
    assert "signer: trusted" in out and "avatar: Ada" in out and "Ada Example" in out
    monkeypatch.setenv("AVATAR_C2PA_CA", str(ca))
    assert verify_file(mp4).trusted


def test_signed_png_verifies_and_keeps_its_pixels(tmp_path):
    image = _frames(1)[0]
    png = tmp_path / "face.png"
    cv2.imwrite(str(png), image)
    assert sign_file(png, INFO) == png
    result = verify_file(png)
    assert result.state == "Trusted" and result.avatar_name == "Ada"
    assert np.array_equal(cv2.imread(str(png)), image)


def test_vtt_sidecar_verifies_and_a_changed_transcript_is_tampered(tmp_path, capsys):
    vtt = tmp_path / "talk.vtt"
    write_webvtt(vtt, [Cue(0.0, 1.0, "Human", "Hello"), Cue(1.0, 2.5, "Avatar", "Hi there.")])
    text = vtt.read_text()
    assert sign_file(vtt, INFO) == sidecar_path(vtt) == tmp_path / "talk.vtt.c2pa"
    assert vtt.read_text() == text                       # the transcript itself is untouched
    result = verify_file(vtt)
    assert result.state == "Trusted" and result.manifest == sidecar_path(vtt)
    assert result.digital_source_type == TRAINED_ALGORITHMIC_MEDIA and result.consent == INFO.consent

    vtt.write_text(text.replace("Hi there.", "Hi there!"))
    result = verify_file(vtt)
    assert not result.intact and any("mismatch" in p for p in result.problems), result.problems
    assert main(["verify", str(vtt)]) == 1

    sidecar_path(vtt).unlink()
    assert verify_file(vtt).state == "unsigned"
    assert main(["verify", str(vtt)]) == 1
    assert main(["verify", str(tmp_path / "missing.vtt")]) == 2
    capsys.readouterr()


def test_local_ca_is_created_once_and_reused(mp4, c2pa_dir, capsys):
    with ThreadPoolExecutor(4) as pool:          # flock excludes threads too: each opens the lock file itself
        chains = list(pool.map(lambda _: load_credentials().chain, range(4)))
    assert len(set(chains)) == 1
    assert capsys.readouterr().err.count("created a local C2PA signing CA") == 1
    assert stat.S_IMODE((c2pa_dir / KEY_FILE).stat().st_mode) == 0o600
    files = {name: (c2pa_dir / name).read_bytes() for name in (CA_FILE, KEY_FILE, CHAIN_FILE)}

    sign_file(mp4, INFO)
    sign_file(mp4, INFO)
    assert "created" not in capsys.readouterr().err
    assert {name: (c2pa_dir / name).read_bytes() for name in files} == files
    assert verify_file(mp4).trusted


def test_corrupt_or_mismatched_credentials_give_clear_errors(mp4, c2pa_dir, tmp_path, monkeypatch):
    load_credentials()
    key = c2pa_dir / KEY_FILE
    good_key = key.read_bytes()
    key.write_bytes(good_key[: len(good_key) // 2])          # half-written
    with pytest.raises(CredentialError, match=str(key)):
        sign_file(mp4, INFO)
    assert verify_file(mp4).state == "unsigned"               # nothing was written

    key.write_bytes(good_key)
    (c2pa_dir / CA_FILE).write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    with pytest.raises(CredentialError, match=str(c2pa_dir / CA_FILE)):
        verify_file(mp4)

    # Credentials from the environment: the same chain with another key does not fit.
    other = tmp_path / "other"
    monkeypatch.setenv("AVATAR_C2PA_DIR", str(other))
    load_credentials()
    monkeypatch.setenv("AVATAR_C2PA_CERT", str(c2pa_dir / CHAIN_FILE))
    monkeypatch.setenv("AVATAR_C2PA_KEY", str(other / KEY_FILE))
    with pytest.raises(CredentialError, match="does not belong"):
        sign_file(mp4, INFO)
    monkeypatch.delenv("AVATAR_C2PA_KEY")
    with pytest.raises(CredentialError, match="both"):
        sign_file(mp4, INFO)


def test_credentials_from_the_environment_sign_without_a_local_ca(mp4, c2pa_dir, tmp_path, monkeypatch):
    load_credentials()
    keys = tmp_path / "keys"
    shutil.copytree(c2pa_dir, keys)
    monkeypatch.setenv("AVATAR_C2PA_DIR", str(tmp_path / "unused"))
    monkeypatch.setenv("AVATAR_C2PA_CERT", (keys / CHAIN_FILE).read_text())     # PEM text works as well as a path
    monkeypatch.setenv("AVATAR_C2PA_KEY", str(keys / KEY_FILE))
    sign_file(mp4, INFO)
    assert not (tmp_path / "unused").exists()
    assert verify_file(mp4).state == "Valid"
    monkeypatch.setenv("AVATAR_C2PA_CA", str(keys / CA_FILE))
    assert verify_file(mp4).state == "Trusted"
