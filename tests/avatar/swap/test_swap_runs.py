"""Swap training runs and the `avatar swap` commands: run folder, exact resume, bad inputs, apply and bake."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from avatar.runs import RunFolderBusy, exclusive_run_folder, latest_checkpoint, load_checkpoint
from avatar.swap.data import SwapDataError, load_faces
from avatar.swap.train import SwapTrainingError, SwapTrainOptions, run_swap_training

from build_support import training_env
from swap_support import write_faces, write_video

REPO = Path(__file__).resolve().parents[3]
AVATAR = [sys.executable, "-m", "avatar.cli"]


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(AVATAR + [str(a) for a in args], capture_output=True, text=True, timeout=600, cwd=REPO,
                          env=training_env())


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(latest_checkpoint(run))["model"]


def test_smoke_run_writes_its_run_folder(smoke_run):
    names = {p.name for p in smoke_run.iterdir()}
    assert {"options.json", "log.jsonl", "losses.png", "grids", "checkpoints", "dst_scan.npz"} <= names
    options = json.loads((smoke_run / "options.json").read_text())
    assert options["preset"]["name"] == "smoke" and options["dst_scan"]["usable"] == 30
    rows = [json.loads(line) for line in (smoke_run / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows] == [5, 10, 15, 20]
    assert all(np.isfinite(r["loss_src"]) and r["it_per_s"] > 0 for r in rows)
    previews = sorted((smoke_run / "grids").glob("grid-*.png"))
    assert previews
    from PIL import Image
    assert Image.open(previews[-1]).size == (8 * 32, 5 * 32)        # 8 columns, 5 rows of 32 px faces
    assert load_checkpoint(latest_checkpoint(smoke_run))["iter"] == 20


def test_killed_run_resumes_to_the_same_weights(smoke_run, tmp_path):
    killed = tmp_path / "killed"
    shutil.copytree(smoke_run, killed)
    # As if killed while writing the last checkpoint: it is half-written, the log ran ahead of the checkpoint.
    last = killed / "checkpoints" / "ckpt-000000020.pt"
    last.unlink()
    (killed / "checkpoints" / "ckpt-000000020.pt.tmp").write_bytes(b"half")
    options = json.loads((smoke_run / "options.json").read_text())
    run_swap_training(SwapTrainOptions(Path(options["src"]), Path(options["dst"]), killed, resume=True,
                                       progress=False))
    straight, resumed = _weights(smoke_run), _weights(killed)
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    losses = lambda run: [(r["iter"], r["loss_src"], r["loss_dst"]) for r in  # noqa: E731
                          map(json.loads, (run / "log.jsonl").read_text().splitlines())]
    assert losses(killed) == losses(smoke_run)


def test_resume_continues_to_more_iterations_with_the_stored_preset(smoke_run, tmp_path):
    more = tmp_path / "more"
    shutil.copytree(smoke_run, more)
    options = json.loads((smoke_run / "options.json").read_text())
    run_swap_training(SwapTrainOptions(Path(options["src"]), Path(options["dst"]), more, preset="cpu64",
                                       resume=True, iters=30, progress=False))
    state = load_checkpoint(latest_checkpoint(more))
    assert state["iter"] == 30 and state["preset"]["name"] == "smoke"


def test_a_second_run_into_a_used_folder_is_refused(smoke_run, avatar_faces, avatar_video):
    with pytest.raises(SwapTrainingError, match="--resume"):
        run_swap_training(SwapTrainOptions(avatar_faces, avatar_video, smoke_run, preset="smoke", progress=False))
    with exclusive_run_folder(smoke_run):
        with pytest.raises(RunFolderBusy):
            run_swap_training(SwapTrainOptions(avatar_faces, avatar_video, smoke_run, resume=True, progress=False))


def test_checkpoints_are_looked_at_under_the_lock(avatar_faces, avatar_video, tmp_path):
    # a training that has taken its folder but not yet written a checkpoint: "busy", not "nothing to resume"
    # (the look and the lock in the other order let a run that ends in between be started over)
    run = tmp_path / "run"
    with exclusive_run_folder(run):
        with pytest.raises(RunFolderBusy):
            run_swap_training(SwapTrainOptions(avatar_faces, avatar_video, run, resume=True, progress=False))
    assert not run.exists() or not any(p.name.startswith("checkpoint") for p in run.iterdir())


def test_resume_refuses_other_faces_or_another_video_and_keeps_the_runs_scan(smoke_run, avatar_faces, avatar_video,
                                                                              tmp_path):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    scan = (run / "dst_scan.npz").read_bytes()
    other_faces = tmp_path / "other"
    shutil.copytree(avatar_faces, other_faces)
    (other_faces / "00000.png").unlink()                                 # one face fewer
    with pytest.raises(SwapTrainingError, match="not the ones this run was trained on"):
        run_swap_training(SwapTrainOptions(other_faces, avatar_video, run, resume=True, iters=30, progress=False))
    with av.open(str(avatar_video)) as source:
        frames = [f.to_ndarray(format="rgb24") for f in source.decode(video=0)]
    other_video = write_video(tmp_path / "other.mp4", frames[::-1])
    with pytest.raises(SwapTrainingError, match="not the driving video this run was trained on"):
        run_swap_training(SwapTrainOptions(avatar_faces, other_video, run, resume=True, iters=30, progress=False))
    assert (run / "dst_scan.npz").read_bytes() == scan                   # refused before scanning the other video
    assert load_checkpoint(latest_checkpoint(run))["iter"] == 20


def test_frame_limits_and_videos_without_a_picture_are_refused(avatar_video, tmp_path):
    from avatar.swap.data import cached_scan

    for limit in (0, -1):
        with pytest.raises(SwapDataError, match="must be positive"):
            cached_scan(avatar_video, tmp_path / "scan.npz", limit, progress=False)
    sound = tmp_path / "sound.mp4"                                        # an mp4 with only an audio stream
    with av.open(str(sound), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        samples.sample_rate = 16000
        for packet in [*stream.encode(samples), *stream.encode(None)]:
            container.mux(packet)
    with pytest.raises(SwapDataError, match="holds no video stream"):
        cached_scan(sound, tmp_path / "scan.npz", progress=False)


def test_faces_folder_with_three_images_is_refused(avatar_faces, tmp_path):
    few = write_faces(tmp_path / "few", [np.zeros((64, 64, 3), np.uint8)] * 3, [np.zeros((68, 2))] * 3)
    with pytest.raises(SwapDataError, match="holds 3 face images"):
        load_faces(few, 64, progress=False)
    assert len(load_faces(avatar_faces, 32, progress=False)) == 24


def test_cli_bad_inputs_exit_2_with_a_clear_message(avatar_faces, avatar_video, smoke_run, tmp_path):
    noface = write_video(tmp_path / "noface.mp4", [np.full((128, 128, 3), 90 + i, np.uint8) for i in range(10)])
    result = run_cli(["swap", "train", "--src", avatar_faces, "--dst", noface, "--out", tmp_path / "r1",
                      "--preset", "smoke"])
    assert result.returncode == 2, result.stderr
    assert "0 of 10 frames usable (10 without a face" in result.stderr

    few = write_faces(tmp_path / "few", [np.zeros((64, 64, 3), np.uint8)] * 3, [np.zeros((68, 2))] * 3)
    result = run_cli(["swap", "train", "--src", few, "--dst", avatar_video, "--out", tmp_path / "r2",
                      "--preset", "smoke"])
    assert result.returncode == 2 and "holds 3 face images" in result.stderr

    corrupt = tmp_path / "corrupt"
    shutil.copytree(smoke_run, corrupt)
    latest_checkpoint(corrupt).write_bytes(b"not a checkpoint")
    result = run_cli(["swap", "apply", corrupt, "--video", avatar_video, "-o", tmp_path / "out.mp4"])
    assert result.returncode == 2 and "cannot read checkpoint" in result.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_apply_writes_a_labelled_side_by_side_mp4(smoke_run, avatar_video, tmp_path):
    out = tmp_path / "swapped.mp4"
    result = run_cli(["swap", "apply", smoke_run, "--video", avatar_video, "-o", out, "--side-by-side"])
    assert result.returncode == 0, result.stderr
    assert "30 swapped" in result.stdout
    with av.open(str(out)) as container:
        assert container.metadata.get("ai_generated") == "true"
        video = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video)]
    with av.open(str(avatar_video)) as source:
        width = source.streams.video[0].width
    assert len(frames) == 30 and frames[0].shape[1] == 2 * width


def test_bake_gives_a_driving_clip_with_swapped_faces(smoke_run, avatar_video, default_clip, tmp_path):
    from avatar.face import IdentityFaceModel
    from avatar.render import Renderer
    from avatar.swap.predictor import SwapFaceModel
    from avatar.swap.video import bake_clip

    clip = bake_clip(avatar_video, SwapFaceModel.from_run(smoke_run), tmp_path / "scan.npz", progress=False)
    assert len(clip) == 30 and clip.frames.shape[1:] == (320, 320, 3)
    source = next(iter(av.open(str(avatar_video)).decode(video=0))).to_ndarray(format="rgb24")
    x0, y0 = clip.landmarks[0][:27].min(0).astype(int) + 10
    x1, y1 = clip.landmarks[0][:27].max(0).astype(int) - 10
    assert np.abs(clip.frames[0][y0:y1, x0:x1].astype(int) - source[y0:y1, x0:x1]).mean() > 3   # face replaced
    assert np.abs(clip.frames[0][:40].astype(int) - source[:40]).mean() < 2                      # background kept
    frame = Renderer(clip, IdentityFaceModel()).render(0)                            # renders without torch
    assert frame.shape == clip.frames[0].shape


def _interrupted(args: list, out: Path, sig: signal.Signals) -> tuple[int, str, str]:
    """`avatar swap train ARGS --out OUT`, sent `sig` as soon as it has written a checkpoint of its own."""
    before = set((out / "checkpoints").glob("ckpt-*.pt"))
    process = subprocess.Popen(AVATAR + [str(a) for a in args + ["--out", out]], cwd=REPO, text=True,
                               env=training_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not set((out / "checkpoints").glob("ckpt-*.pt")) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


def test_ctrl_c_or_kill_9_then_resume_matches_an_uninterrupted_run(avatar_faces, avatar_video, smoke_run, tmp_path):
    straight, run = tmp_path / "straight", tmp_path / "stopped"
    for folder in (straight, run):                                      # the driving video's scan is reused
        folder.mkdir()
        shutil.copy(smoke_run / "dst_scan.npz", folder / "dst_scan.npz")
    args = ["swap", "train", "--src", avatar_faces, "--dst", avatar_video]
    assert run_cli(args + ["--preset", "smoke", "--iters", "40", "--out", straight]).returncode == 0
    code, out, err = _interrupted(args + ["--preset", "smoke", "--iters", "40"], run, signal.SIGINT)
    assert code == 130, err
    assert f"continue with: avatar swap train --src {avatar_faces} --dst {avatar_video} --out {run} --resume" in out
    stopped_at = load_checkpoint(latest_checkpoint(run))["iter"]
    # resumed, then killed with kill -9 (no chance to checkpoint or clean up) once it has checkpointed again
    code, out, err = _interrupted(args + ["--resume"], run, signal.SIGKILL)
    assert code == -signal.SIGKILL, err
    assert stopped_at < load_checkpoint(latest_checkpoint(run))["iter"] < 40
    result = run_cli(args + ["--out", run, "--resume"])
    assert result.returncode == 0, result.stderr
    a, b = _weights(straight), _weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert load_checkpoint(latest_checkpoint(run))["iter"] == 40           # the run's own length, kept


def test_two_process_gloo_run_splits_each_batch_and_resumes_in_one(avatar_faces, avatar_video, smoke_run, tmp_path):
    run = tmp_path / "ddp"
    run.mkdir()
    shutil.copy(smoke_run / "dst_scan.npz", run / "dst_scan.npz")      # the scan is reused, as apply reuses it
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "avatar.cli", "swap", "train", "--src", str(avatar_faces), "--dst", str(avatar_video),
           "--out", str(run), "--preset", "smoke", "--iters", "10"]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "options.json").read_text())["world_size"] == 2
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows] == [5, 10]                          # only rank 0 writes
    assert load_checkpoint(latest_checkpoint(run))["iter"] == 10
    # The same run continues in one process, to the length asked for.
    run_swap_training(SwapTrainOptions(avatar_faces, avatar_video, run, resume=True, iters=20, progress=False))
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows] == [5, 10, 15, 20]
    assert not torch.equal(_weights(run)["encoder.blocks.0.conv.weight"], _weights(smoke_run)["encoder.blocks.0.conv.weight"])


def test_mouth_moves_reach_only_the_src_faces_and_a_batch_stays_a_function_of_its_number(avatar_faces, monkeypatch):
    """`cpu64-mouth` (the cpu build's swap) moves some src faces' mouths with draws from the batch's own generator:
    a resumed run still draws the same batches, and the driving faces are never touched."""
    import avatar.swap.train as train
    from avatar.swap.augment import MOUTH_OPEN_BY

    faces = load_faces(avatar_faces, 64, progress=False)
    moved = train.PairSampler(faces, faces, warp=True, mouth=1.0).batch(7, 8)
    other = train.PairSampler(faces, faces, warp=True, mouth=1.0)
    assert not torch.equal(other.batch(3, 8)[0]["target"], moved[0]["target"])
    again = other.batch(7, 8)                              # after other batches, as a resumed run draws it
    for side in (0, 1):
        assert all(torch.equal(moved[side][key], again[side][key]) for key in moved[side])

    def unmoved(image, landmarks, rng):             # random_mouth's draws, the face left as it was
        if rng.random() >= 0.5:
            rng.uniform(*MOUTH_OPEN_BY)
        return image, landmarks

    monkeypatch.setattr(train, "random_mouth", unmoved)
    plain = train.PairSampler(faces, faces, warp=True, mouth=1.0).batch(7, 8)
    assert all(torch.equal(moved[1][key], plain[1][key]) for key in plain[1])          # the driving side
    change = (moved[0]["target"] - plain[0]["target"]).abs().mean(dim=(0, 1))          # [H, W] over the batch
    brows = int(faces.landmarks[:, 17:27, 1].min()) - 2                  # rows above the brows: the mesh's fixed part
    assert float(change.sum()) > 0.5                                      # mouths moved
    assert float(change[:brows].sum()) < 0.02 * float(change.sum())      # and nothing above the face
    lower = change[change.shape[0] // 2:].sum()
    assert float(lower) > 0.8 * float(change.sum())                      # the change is in the lower face
