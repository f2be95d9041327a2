"""StyleGAN2 training: R1, EMA, sampler, a smoke run's run folder, bit-for-bit resume, and a 2-process gloo run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avatar.runs import CheckpointError, RunFolderBusy, exclusive_run_folder, latest_checkpoint, load_checkpoint
from synth.dataset import DatasetWriter
from synth.presets import get_preset
from synth.train import (GanTrainer, GanTrainOptions, ImageSampler, TrainingError, discriminator_loss, ema_beta,
                         load_generator, r1_penalty, run_training, trained_kimg, update_ema)

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]


def make_dataset(path: Path, count: int = 16, size: int = 64) -> Path:
    """A small dataset in the prepare format: smooth random colour blobs, not footage."""
    writer = DatasetWriter(path, size, {"test": True}, shard_size=10)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(count):
        cy, cx = rng.uniform(0.3, 0.7, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.05)[..., None]
        image = (blob * rng.uniform(80, 255, 3) + (1 - blob) * rng.uniform(0, 80, 3)).astype(np.uint8)
        writer.add(image, {"source": "blobs", "frame": i, "landmarks": []})
    writer.finish(["blobs"], {"kept": count}, {})
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "ds")


def test_r1_penalty_of_a_linear_discriminator():
    torch.manual_seed(0)
    a = torch.randn(3 * 4 * 4)
    reals = torch.randn(5, 3, 4, 4, requires_grad=True)
    logits = reals.flatten(1) @ a                                     # D(x) = <a, x>: gradient a everywhere
    penalty = r1_penalty(logits, reals, gamma=0.3)
    assert torch.allclose(penalty, 0.3 / 2 * a.square().sum())
    # Quadratic D(x) = ||x||^2 / 2: gradient x, penalty gamma/2 * mean ||x||^2, and it is differentiable.
    reals2 = torch.randn(5, 3, 4, 4, requires_grad=True)
    penalty2 = r1_penalty(reals2.square().sum(dim=[1, 2, 3]) / 2, reals2, gamma=2.0)
    assert torch.allclose(penalty2, reals2.detach().square().sum(dim=[1, 2, 3]).mean())
    penalty2.backward()
    assert torch.allclose(reals2.grad, 2 * reals2.detach() / 5)


def test_lazy_r1_is_weighted_by_its_interval():
    torch.manual_seed(0)
    a = torch.randn(3 * 4 * 4)
    reals = torch.randn(6, 3, 4, 4, requires_grad=True)
    fakes = torch.randn(6, 3, 4, 4)
    real_logits, fake_logits = reals.flatten(1) @ a, fakes.flatten(1) @ a
    logistic = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
    total, main, r1 = discriminator_loss(fake_logits, real_logits, reals, r1_gamma=0.5, r1_weight=16)
    assert torch.allclose(main, logistic)
    assert torch.allclose(r1, 0.25 * a.square().sum())
    assert torch.allclose(total, logistic + 16 * 0.25 * a.square().sum())
    total0, _, r1_none = discriminator_loss(fake_logits, real_logits, reals, r1_gamma=0.5, r1_weight=0)
    assert r1_none is None and torch.allclose(total0, logistic)


def test_r1_only_every_interval_steps():
    preset = replace(get_preset("smoke"), resolution=16, r1_interval=3, batch_size=4)
    torch.manual_seed(0)
    trainer = GanTrainer(preset)
    reals = torch.rand(4, 3, 16, 16) * 2 - 1
    r1 = [trainer.step(reals).r1 for _ in range(7)]
    assert [x is not None for x in r1] == [True, False, False, True, False, False, True]
    assert all(x > 0 for x in r1 if x is not None)
    no_r1 = GanTrainer(replace(preset, r1_gamma=0.0))
    assert all(no_r1.step(reals).r1 is None for _ in range(3))


def test_ema_beta_formula_and_rampup():
    assert ema_beta(10_000_000, 32, ema_kimg=10, ema_rampup=None) == pytest.approx(0.5 ** (32 / 10_000))
    # Rampup: early on the half-life is rampup * images seen, not ema_kimg.
    assert ema_beta(1000, 32, ema_kimg=10, ema_rampup=0.05) == pytest.approx(0.5 ** (32 / 50))
    assert ema_beta(10_000_000, 32, ema_kimg=10, ema_rampup=0.05) == pytest.approx(0.5 ** (32 / 10_000))


def test_update_ema_matches_formula():
    torch.manual_seed(0)
    G, G_ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    G_ema.register_buffer("stat", torch.zeros(2))
    G.register_buffer("stat", torch.ones(2))
    before = [p.detach().clone() for p in G_ema.parameters()]
    update_ema(G_ema, G, beta=0.9)
    for p_old, p_ema, p in zip(before, G_ema.parameters(), G.parameters()):
        assert torch.allclose(p_ema, 0.9 * p_old + 0.1 * p)
    assert torch.equal(G_ema.stat, G.stat)


def test_sampler_is_reproducible_and_shards_by_rank():
    a, b = ImageSampler(10, seed=1), ImageSampler(10, seed=1)
    first, _ = a.take(25)
    assert sorted(first[:10].tolist()) == list(range(10))             # one epoch is a permutation
    b.take(7)
    c = ImageSampler(10, seed=1)
    c.position = 7
    assert np.array_equal(b.take(18)[0], c.take(18)[0])
    assert np.array_equal(first[7:], ImageSampler(10, seed=1).take(25)[0][7:])
    r0 = set(ImageSampler(10, 1, rank=0, world_size=2).take(5)[0])
    r1 = set(ImageSampler(10, 1, rank=1, world_size=2).take(5)[0])
    assert r0.isdisjoint(r1) and r0 | r1 == set(range(10))


def test_smoke_run_writes_run_folder(dataset, tmp_path):
    run = run_training(GanTrainOptions(dataset, "smoke", tmp_path / "run"))
    assert (run / "options.json").is_file()
    options = json.loads((run / "options.json").read_text())
    assert options["preset"]["name"] == "smoke" and options["images"] == 16
    ckpt = latest_checkpoint(run)
    assert ckpt.name == "ckpt-000000064.pt"
    state = load_checkpoint(ckpt)
    assert state["preset"]["resolution"] == 32 and state["cur_nimg"] == 64
    assert {"torch", "numpy", "python"} <= set(state["rng"][0])
    assert (run / "losses.png").stat().st_size > 1000
    assert (run / "grids" / "reals.png").is_file() and (run / "grids" / "grid-000000064.png").is_file()
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["nimg"] for r in rows] == [16, 32, 48, 64]
    assert all(np.isfinite(r["loss_G"]) and np.isfinite(r["loss_D"]) for r in rows)

    G, preset = load_generator(run)
    assert preset.name == "smoke" and G.img_resolution == 32
    with torch.no_grad():
        img = G(torch.randn(3, G.z_dim), truncation_psi=0.7, noise_mode="const")
    assert img.shape == (3, 3, 32, 32)

    with pytest.raises(TrainingError, match="--resume"):
        run_training(GanTrainOptions(dataset, "smoke", run))
    with pytest.raises(TrainingError, match="preset"):
        run_training(GanTrainOptions(dataset, "cpu64", run, resume=True))


def test_bfloat16_steps_train_in_float32_with_bfloat16_convolutions(dataset):
    preset = replace(get_preset("smoke"), precision="bf16")
    torch.manual_seed(0)
    trainer = GanTrainer(preset)
    assert trainer.precision == "bf16"
    conv_dtypes = set()
    hook = lambda module, args, out: conv_dtypes.add(out.dtype)  # noqa: E731
    handles = [m.register_forward_hook(hook) for m in trainer.D.modules() if type(m).__name__ == "Conv2d"]
    before = [p.detach().clone() for p in trainer.G.parameters()]
    reals = torch.rand(8, 3, 32, 32) * 2 - 1
    for _ in range(3):
        stats = trainer.step(reals)
        assert np.isfinite([stats.loss_G, stats.loss_D]).all()
    for h in handles:
        h.remove()
    assert conv_dtypes == {torch.bfloat16}                            # D's convolutions ran in bfloat16
    params = list(trainer.G.parameters()) + list(trainer.D.parameters()) + list(trainer.G_ema.parameters())
    assert all(p.dtype == torch.float32 for p in params)             # weights, Adam and the EMA stay float32
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.G.parameters()))
    # "auto" picks bfloat16 only where the CPU multiplies it natively.
    assert GanTrainer(replace(preset, precision="auto")).precision in ("bf16", "fp32")
    with pytest.raises(ValueError, match="precision"):
        replace(preset, precision="fp16")


def test_wall_clock_budget_stops_with_a_checkpoint(dataset, tmp_path):
    run = run_training(GanTrainOptions(dataset, "smoke", tmp_path / "run", minutes=0))
    state = load_checkpoint(latest_checkpoint(run))
    assert state["cur_nimg"] == 8                                     # one step, then out of time
    assert (run / "grids" / "grid-000000008.png").is_file()


def test_bad_inputs_give_clear_errors(tmp_path):
    small = make_dataset(tmp_path / "small", count=4, size=16)
    with pytest.raises(TrainingError, match="--size 32"):
        run_training(GanTrainOptions(small, "smoke", tmp_path / "run"))
    with pytest.raises(CheckpointError, match="no checkpoints"):
        load_generator(tmp_path / "nothing")
    with pytest.raises(ValueError, match="unknown preset"):
        run_training(GanTrainOptions(small, "giant", tmp_path / "run2"))
    for bad in (-1.0, 0.0, float("nan")):
        with pytest.raises(TrainingError, match="--kimg must be a positive number"):
            run_training(GanTrainOptions(small, "smoke", tmp_path / "run3", kimg=bad))
    for bad in (-1.0, float("nan")):
        with pytest.raises(TrainingError, match="--minutes must be zero or more"):
            run_training(GanTrainOptions(small, "smoke", tmp_path / "run3", minutes=bad))
    assert not (tmp_path / "run3").exists()


def test_devices_this_machine_cannot_use_are_refused_before_any_work(dataset, tmp_path, capsys):
    from synth.cli import main
    from avatar.runs import DeviceError, check_device

    assert check_device("cpu") == "cpu"
    for bad, why in (("bogus", "unknown device"), ("meta", "not supported")):
        with pytest.raises(DeviceError, match=why):
            check_device(bad)
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: --device cuda is valid here")
    with pytest.raises(DeviceError, match="--device cpu"):
        check_device("cuda")
    for argv in (["train", str(dataset), "--preset", "smoke", "--out", str(tmp_path / "run"), "--device", "cuda"],
                 ["sample", str(tmp_path / "run"), "--out", str(tmp_path / "faces"), "--device", "cuda:0"],
                 ["metrics", str(tmp_path / "faces"), "--device", "cuda"]):
        assert main(argv) == 2, argv
        assert "no CUDA" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "faces").exists()


def test_a_run_folder_in_use_is_refused(dataset, tmp_path):
    out = tmp_path / "run"
    with exclusive_run_folder(out):
        with pytest.raises(RunFolderBusy, match=f"in use by another training process \\(pid {os.getpid()}\\)"):
            run_training(GanTrainOptions(dataset, "smoke", out))
    assert [p.name for p in out.iterdir()] == [".lock"]     # the holder's folder is left as it was
    run_training(GanTrainOptions(dataset, "smoke", out))                       # free again
    with pytest.raises(TrainingError):                       # refused before writing: no folder left behind
        run_training(GanTrainOptions(make_dataset(tmp_path / "small", count=4, size=16), "smoke",
                                     tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()


def test_ctrl_c_then_resume_from_the_command_line(dataset, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "avatar.cli", "synth", "train", str(dataset), "--preset", "smoke", "--out", str(run),
           "--kimg", "100"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    # As from a terminal: a shell's background job (e.g. CI started with `&`) inherits SIGINT ignored, and Python
    # then installs no KeyboardInterrupt handler.
    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not list((run / "checkpoints").glob("ckpt-*.pt")) and time.monotonic() < deadline:
            assert first.poll() is None, first.communicate()[1][-3000:]
            time.sleep(0.2)
        assert list((run / "checkpoints").glob("ckpt-*.pt")), "no checkpoint within 120 s"
        second = subprocess.run(cmd + ["--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and f"pid {first.pid}" in second.stderr, second.stderr[-3000:]
        first.send_signal(signal.SIGINT)
        try:
            _, err = first.communicate(timeout=60)
        except subprocess.TimeoutExpired:            # say where it hangs: the CLI dumps its stacks on SIGUSR1
            first.send_signal(signal.SIGUSR1)
            time.sleep(3)
            first.kill()
            pytest.fail("no exit within 60 s of Ctrl-C; stacks:\n" + first.communicate()[1][-6000:])
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, err[-3000:]
    assert "interrupted; the last checkpoint is" in err and "--resume" in err
    saved = load_checkpoint(latest_checkpoint(run))["cur_nimg"]
    resumed = subprocess.run(cmd[:-1] + [str(saved / 1000 + 0.016), "--resume"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint(latest_checkpoint(run))["cur_nimg"] == saved + 16


def _final_state(run: Path) -> dict:
    return load_checkpoint(latest_checkpoint(run))


def _assert_same(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    else:
        assert a == b, where


def test_resume_is_bit_for_bit(dataset, tmp_path):
    straight = run_training(GanTrainOptions(dataset, "smoke", tmp_path / "straight", kimg=0.064))
    split = run_training(GanTrainOptions(dataset, "smoke", tmp_path / "split", kimg=0.032))
    assert load_checkpoint(latest_checkpoint(split))["cur_nimg"] == 32
    run_training(GanTrainOptions(dataset, "smoke", split, resume=True, kimg=0.064))
    a, b = _final_state(straight), _final_state(split)
    assert a["cur_nimg"] == b["cur_nimg"] == 64 and trained_kimg(split) == 0.064
    for key in ("G", "D", "G_ema", "opt_G", "opt_D", "rng", "sampler", "step_index"):
        _assert_same(a[key], b[key], key)
    # The resumed log continues where the checkpoint was, without duplicates.
    nimgs = [json.loads(line)["nimg"] for line in (split / "log.jsonl").read_text().splitlines()]
    assert nimgs == [16, 32, 48, 64]
    assert json.loads((split / "options.json").read_text())["resumed_at_kimg"] == [0.032]
    # And it did train: the parameters moved away from the halfway checkpoint.
    assert not torch.equal(a["G"]["synthesis.blocks.0.const"], _first_state(split)["G"]["synthesis.blocks.0.const"])


def test_killed_run_resumes_from_its_last_checkpoint(dataset, tmp_path):
    straight = run_training(GanTrainOptions(dataset, "smoke", tmp_path / "straight"))
    killed = tmp_path / "killed"
    shutil.copytree(straight, killed)
    # As if killed while writing the final checkpoint: the 64-image one is half-written, the log ran ahead.
    final = killed / "checkpoints" / "ckpt-000000064.pt"
    final.rename(final.with_name(final.name + ".tmp"))
    run_training(GanTrainOptions(dataset, "smoke", killed, resume=True))
    _assert_same(_final_state(straight)["G_ema"], _final_state(killed)["G_ema"], "G_ema")
    _assert_same(_final_state(straight)["opt_D"], _final_state(killed)["opt_D"], "opt_D")
    nimgs = [json.loads(line)["nimg"] for line in (killed / "log.jsonl").read_text().splitlines()]
    assert nimgs == [16, 32, 48, 64]


def _first_state(run: Path) -> dict:
    return load_checkpoint(sorted((run / "checkpoints").glob("ckpt-*.pt"))[0])


def test_two_process_gloo_run(dataset, tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "synth.train", str(dataset), "--preset", "smoke", "--out", str(run), "--kimg", "0.032"]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_checkpoint(latest_checkpoint(run))
    assert state["world_size"] == 2 and state["cur_nimg"] == 32
    assert len(state["rng"]) == 2 and state["sampler"] == [16, 16]   # 4 steps of 4 images per process
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    assert json.loads((run / "options.json").read_text())["world_size"] == 2
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["nimg"] for r in rows] == [16, 32]                       # only rank 0 writes
