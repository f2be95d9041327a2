"""bench/synth_train.py as a user runs it, on the smoke preset: it finishes and its figures are consistent."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from synth_train import is_flop_kernel  # noqa: E402


def test_flop_kernels_are_the_convolutions_and_matmuls():
    for name in ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::mm", "aten::addmm"):
        assert is_flop_kernel(name), name
    for name in ("aten::copy_", "aten::mul", "aten::leaky_relu", "autograd::engine::evaluate_function: "
                 "ConvolutionBackward0", "aten::_fused_adam_"):
        assert not is_flop_kernel(name), name


def test_bench_runs_on_the_smoke_preset(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "bench/synth_train.py", "--preset", "smoke", "--seconds", "0.5", "--threads", "1",
           "--precision", "fp32", "--json", str(out)]
    result = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["preset"] == "smoke" and figures["precision"] == "fp32"
    assert figures["steps"] % 4 == 0                          # whole lazy-R1 cycles (smoke: r1_interval 4)
    assert figures["images_per_s"] > 0 and figures["gflop_per_image"] > 0
    assert 0 < figures["kernel_share_of_step"] < 1
    # The kernels alone run faster than the whole step, whose time also includes everything else.
    assert figures["kernel_gflop_s"] > figures["achieved_gflop_s_wall"]
    assert figures["kernel_fraction_of_peak"] > figures["fraction_of_peak_wall"]
