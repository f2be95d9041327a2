"""The avatar bundle: real H.264 frames, real hashes and real C2PA-signed PNGs, written once per module from 20
frames of the built-in (generated) avatar, then read back, tampered with and refused."""
import json
import os
import shutil
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest

from avatar.bundle import (CLIP_FILE, FORMAT, FORMAT_VERSION, FRAMES_FILE, MANIFEST_FILE, Bundle, BundleError,
                           consent_lines, describe, is_bundle, load_bundle, open_bundle, write_bundle)
from avatar.driving import DrivingClip
from avatar.files import file_sha256, write_json_atomic
from avatar.pipeline import AvatarEngine, AvatarSettings
from avatar.provenance import verify_file

N_FRAMES = 20
CONSENT = [{"role": "subject", "name": "Ada Example", "file": "consent.txt", "sha256": "1234abcd" + "0" * 56,
            "date": "2026-12-01"}]
MANIFEST = {"name": "Ada", "consent": CONSENT,
            "sources": {"subject": [{"file": "ada-1.mp4", "sha256": "ab" * 32, "bytes": 1_200_000}],
                        "driving": {"file": "driving.mp4", "sha256": "cd" * 32, "bytes": 3_400_000},
                        "faces": "sampled from the GAN"},
            "build": {"preset": "baby", "swap": {"steps": 10}},
            "quality": {"identity_similarity": np.float32(0.8125)}}    # numpy numbers are written as JSON numbers


@pytest.fixture(scope="module", autouse=True)
def c2pa_dir(tmp_path_factory):
    """Signing uses a local CA in a temporary folder, never the repository's var/c2pa or credentials from the
    environment."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AVATAR_C2PA_CERT", "AVATAR_C2PA_KEY", "AVATAR_C2PA_CA"):
            mp.delenv(name, raising=False)
        folder = tmp_path_factory.mktemp("c2pa")
        mp.setenv("AVATAR_C2PA_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def clip(default_clip: DrivingClip) -> DrivingClip:
    part = slice(40, 40 + N_FRAMES)
    return DrivingClip(frames=default_clip.frames[part], landmarks=default_clip.landmarks[part],
                       mouth=default_clip.mouth[part], pose=default_clip.pose[part], eyes=default_clip.eyes[part])


@pytest.fixture(scope="module")
def written(tmp_path_factory, clip: DrivingClip) -> dict[str, Path]:
    """One folder bundle and one .avatar bundle, alone in their folders."""
    folder = tmp_path_factory.mktemp("bundles")
    preview = {"preview.png": clip.frames[0]}
    return {"folder": write_bundle(folder / "ada", clip, MANIFEST, images=preview),
            "zip": write_bundle(folder / "ada.avatar", clip, MANIFEST, images=preview)}


@pytest.fixture
def bundle_dir(written, tmp_path) -> Path:
    """A private copy of the folder bundle, to tamper with."""
    return Path(shutil.copytree(written["folder"], tmp_path / "ada"))


def _manifest(path: Path) -> dict:
    return json.loads((path / MANIFEST_FILE).read_text())


def _refused(path: Path, *words: str) -> str:
    with pytest.raises(BundleError) as caught:
        load_bundle(path)
    message = str(caught.value)
    assert str(path) in message
    for word in words:
        assert word in message
    return message


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_round_trip_keeps_arrays_exactly_and_frames_closely(written, clip, kind):
    bundle, loaded = load_bundle(written[kind])
    assert bundle.name == "Ada"
    assert bundle.consent == ("subject: Ada Example, consent statement consent.txt (sha256 1234abcd…), 2026-12-01",)
    assert loaded.source == "bundle:Ada"
    assert len(loaded) == N_FRAMES and loaded.frames.shape == clip.frames.shape
    for name in ("landmarks", "mouth", "pose", "eyes"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(clip, name))
    assert np.abs(loaded.frames.astype(np.int16) - clip.frames).mean() < 4


def test_the_manifest_lists_every_file_with_its_size_and_hash(written):
    folder = written["folder"]
    manifest = _manifest(folder)
    assert manifest["format"] == FORMAT and manifest["version"] == FORMAT_VERSION
    assert manifest["frames"] == {"count": N_FRAMES, "fps": 25.0, "width": 512, "height": 512}
    assert manifest["quality"]["identity_similarity"] == pytest.approx(0.8125)
    assert manifest["created"] and manifest["software"].startswith("avatar-service")
    on_disk = sorted(p.name for p in folder.iterdir() if p.name != MANIFEST_FILE)
    assert sorted(manifest["files"]) == on_disk == [CLIP_FILE, FRAMES_FILE, "preview.png"]
    for name, entry in manifest["files"].items():
        assert entry == {"sha256": file_sha256(folder / name), "bytes": (folder / name).stat().st_size}
    assert sorted(p.name for p in folder.parent.iterdir()) == ["ada", "ada.avatar"]   # no partial leftovers


def test_the_zip_holds_the_same_flat_files_stored_with_the_manifest_last(written):
    with zipfile.ZipFile(written["zip"]) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos][-1] == MANIFEST_FILE
        assert sorted(i.filename for i in infos) == sorted(p.name for p in written["folder"].iterdir())
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        assert json.loads(zf.read(MANIFEST_FILE))["name"] == "Ada"


def test_frames_are_h264_at_a_sane_size(written):
    path = written["folder"] / FRAMES_FILE
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 25
        assert sum(1 for _ in container.decode(video=0)) == N_FRAMES
    per_frame = path.stat().st_size / N_FRAMES
    # 35 s at 25 fps must stay at tens of MB: well under 40 kB a frame, and not so small that nothing is there.
    assert 500 < per_frame < 40_000


def test_preview_is_a_signed_png_naming_the_avatar_and_its_consent(written):
    result = verify_file(written["folder"] / "preview.png")
    assert result.trusted
    assert result.avatar_name == "Ada"
    assert result.consent == consent_lines(MANIFEST)


def test_odd_frame_sides_lose_their_last_row_and_column(tmp_path, clip):
    odd = DrivingClip(frames=np.ascontiguousarray(clip.frames[:3, :509, :511]), landmarks=clip.landmarks[:3],
                      mouth=clip.mouth[:3], pose=clip.pose[:3], eyes=clip.eyes[:3])
    bundle, loaded = load_bundle(write_bundle(tmp_path / "odd", odd, {"name": "Odd"}))
    assert loaded.frames.shape == (3, 508, 510, 3)
    assert bundle.manifest["frames"]["width"] == 510 and bundle.manifest["frames"]["height"] == 508
    np.testing.assert_array_equal(loaded.landmarks, odd.landmarks)
    assert np.abs(loaded.frames.astype(np.int16) - odd.frames[:, :508, :510]).mean() < 4


def test_is_bundle(written, tmp_path):
    assert is_bundle(written["folder"]) and is_bundle(written["zip"])
    assert not is_bundle(tmp_path) and not is_bundle(tmp_path / "nothing.avatar")
    (tmp_path / "clip.npz").write_bytes(b"")
    assert not is_bundle(tmp_path / "clip.npz")


def test_a_missing_file_is_refused(bundle_dir):
    (bundle_dir / FRAMES_FILE).unlink()
    _refused(bundle_dir, f"{FRAMES_FILE} is missing")


def test_a_truncated_file_is_refused(bundle_dir):
    path = bundle_dir / CLIP_FILE
    path.write_bytes(path.read_bytes()[:-100])
    _refused(bundle_dir, f"{CLIP_FILE} is truncated or grown", "manifest says")


def test_one_changed_byte_is_refused(bundle_dir):
    path = bundle_dir / FRAMES_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    _refused(bundle_dir, f"{FRAMES_FILE} was altered", "sha256")


def test_a_changed_byte_inside_a_zip_is_refused(written, tmp_path):
    tampered = tmp_path / "ada.avatar"
    with zipfile.ZipFile(written["zip"]) as source, zipfile.ZipFile(tampered, "w") as zf:
        for info in source.infolist():
            data = bytearray(source.read(info))
            if info.filename == FRAMES_FILE:
                data[-10] ^= 0xFF
            zf.writestr(info.filename, bytes(data))
    _refused(tampered, f"{FRAMES_FILE} was altered")


def test_a_newer_format_version_is_refused(bundle_dir):
    manifest = _manifest(bundle_dir)
    manifest["version"] = 2
    write_json_atomic(bundle_dir / MANIFEST_FILE, manifest)
    _refused(bundle_dir, "format version 2, this software reads 1")


def test_a_manifest_that_is_not_json_is_refused(bundle_dir):
    (bundle_dir / MANIFEST_FILE).write_text('{"format": "avatar-bundle", ')
    _refused(bundle_dir, f"{MANIFEST_FILE} is not JSON")


def test_a_pickled_object_array_is_never_unpickled(bundle_dir, tmp_path, clip):
    """A clip.npz whose hash the manifest vouches for, but which holds a pickle that would make a folder."""
    marker = tmp_path / "pickle-ran"
    payload = np.empty(1, dtype=object)
    payload[0] = _MakesFolder(str(marker))
    path = bundle_dir / CLIP_FILE
    with open(path, "wb") as f:
        np.savez(f, landmarks=payload, mouth=clip.mouth, pose=clip.pose, eyes=clip.eyes)
    manifest = _manifest(bundle_dir)
    manifest["files"][CLIP_FILE] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    write_json_atomic(bundle_dir / MANIFEST_FILE, manifest)
    assert open_bundle(bundle_dir).name == "Ada"              # the hashes agree: only allow_pickle stands in the way
    _refused(bundle_dir, CLIP_FILE, "allow_pickle=False")
    assert not marker.exists()


class _MakesFolder:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_a_zip_member_outside_the_bundle_is_refused(written, tmp_path):
    evil = tmp_path / "evil.avatar"
    shutil.copyfile(written["zip"], evil)
    with zipfile.ZipFile(evil, "a") as zf:
        zf.writestr("../x", b"escaped")
    _refused(evil, "'../x'")


def test_a_file_that_is_not_a_zip_is_refused(tmp_path):
    fake = tmp_path / "fake.avatar"
    fake.write_bytes(b"not a zip at all")
    _refused(fake, "not a readable .avatar zip")


def test_an_existing_output_is_never_overwritten(written, clip, tmp_path):
    for out in (written["folder"], written["zip"], tmp_path):
        before = sorted(out.iterdir()) if out.is_dir() else out.read_bytes()
        with pytest.raises(BundleError, match="already exists"):
            write_bundle(out, clip, MANIFEST)
        assert (sorted(out.iterdir()) if out.is_dir() else out.read_bytes()) == before


def test_a_manifest_without_a_name_is_refused(clip, tmp_path):
    with pytest.raises(BundleError, match="'name'"):
        write_bundle(tmp_path / "nameless", clip, {"consent": CONSENT})
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_nothing_under_any_name(clip, tmp_path, monkeypatch):
    monkeypatch.setenv("AVATAR_C2PA_CERT", str(tmp_path / "missing-cert.pem"))   # signing fails after encoding
    monkeypatch.setenv("AVATAR_C2PA_KEY", str(tmp_path / "missing-key.pem"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match="AVATAR_C2PA_CERT"):
        write_bundle(out / "ada.avatar", clip, MANIFEST, images={"preview.png": clip.frames[0]})
    assert list(out.iterdir()) == []


def test_describe_says_who_with_whose_consent_and_that_files_were_verified(written):
    text = describe(open_bundle(written["zip"]))
    assert "name: Ada" in text
    assert "subject: Ada Example, consent statement consent.txt (sha256 1234abcd…), 2026-12-01" in text
    assert "ada-1.mp4" in text and "driving.mp4" in text and "faces: sampled from the GAN" in text
    assert "preset: baby" in text and "steps: 10" in text and "identity_similarity: 0.8125" in text
    assert "driving clip analysis: not recorded" in text
    assert "files: all 3 verified (sha256)" in text


def test_describe_says_loudly_when_no_consent_is_recorded(written):
    manifest = {**open_bundle(written["folder"]).manifest, "consent": []}
    text = describe(Bundle(written["folder"], manifest))
    assert "consent on record: NONE" in text


def test_the_engine_loads_a_bundle(written):
    engine = AvatarEngine.from_settings(AvatarSettings(avatar=str(written["folder"])))
    assert engine.name == "Ada"
    assert engine.consent == consent_lines(MANIFEST)
    assert len(engine.clip) == N_FRAMES


def test_the_engine_refuses_a_tampered_bundle(bundle_dir):
    (bundle_dir / "preview.png").write_bytes(b"\x89PNG not the signed picture")
    with pytest.raises(BundleError, match="preview.png is truncated or grown"):
        AvatarEngine.from_settings(AvatarSettings(avatar=str(bundle_dir)))


def test_the_engine_says_what_it_accepts(tmp_path):
    with pytest.raises(ValueError, match="an avatar bundle folder or .avatar file, or a driving-clip .npz"):
        AvatarEngine.from_settings(AvatarSettings(avatar=str(tmp_path / "nowhere")))
