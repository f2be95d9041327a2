"""The trained swap model behind the `avatar.types.FaceModel` seam: aligned driving faces in, subject faces and
masks out. Faces of another size are resized to the model's resolution and back."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from avatar.runs import CheckpointError, latest_checkpoint, load_checkpoint
from avatar.swap.model import SwapModel, SwapPreset


def load_swap_model(run: Path, device: str = "cpu") -> tuple[SwapModel, SwapPreset, int]:
    """The model of a run's last checkpoint, in eval mode, with its preset and iteration."""
    path = latest_checkpoint(Path(run))
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not {"preset", "iter", "model"} <= state.keys():
        raise CheckpointError(f"{path} is not a swap checkpoint")
    preset = SwapPreset.from_dict(state["preset"])
    model = SwapModel(preset)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit the swap model: {exc}") from None
    return model.to(device).eval(), preset, int(state["iter"])


class SwapFaceModel:
    """Callable like avatar.types.FaceModel: uint8 [N, S, S, 3] -> (uint8 [N, S, S, 3], float32 [N, S, S])."""

    def __init__(self, model: SwapModel, device: str = "cpu"):
        self.model, self.device = model.eval(), device
        self.resolution = model.resolution

    @classmethod
    def from_run(cls, run: Path, device: str = "cpu") -> SwapFaceModel:
        return cls(load_swap_model(run, device)[0], device)

    @torch.no_grad()
    def __call__(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if faces.ndim != 4 or faces.shape[-1] != 3 or faces.shape[1] != faces.shape[2]:
            raise ValueError(f"expected aligned faces [N, S, S, 3], got {faces.shape}")
        size, r = faces.shape[1], self.resolution
        batch = faces if size == r else np.stack([cv2.resize(f, (r, r), interpolation=cv2.INTER_AREA) for f in faces])
        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255).to(self.device)
        rgb, mask = self.model.swap(x)
        out = (rgb.float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        masks = mask.float()[:, 0].cpu().numpy()
        if size != r:
            out = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC) for f in out])
            masks = np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR) for m in masks])
        return out, masks.astype(np.float32)
