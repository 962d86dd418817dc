"""The machine: which device the check measures, what it is, and the small helpers every case
shares (progress lines, device syncs, failures as one-line notes)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import platform
import sys
from collections.abc import Iterator
from typing import Any

import torch

from pipeline.training import distributed as D

# Packages whose versions go into the report: what differs between this machine and another.
VERSIONED = ("numpy", "zarr", "numcodecs", "numba", "timm", "torchvision", "pydantic", "dvclive")


def say(text: str) -> None:
    print(f"gpu_check: {text}", file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    """Wait for the GPU's queued work, so the clock measures work done, not work queued."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def error_note(prefix: str, err: BaseException) -> str:
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{prefix}{type(err).__name__}: {first[:160]}"


def amp_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """The trainer's progress bar and log lines, kept (shown only when a run fails)."""
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        yield buffer


def pick_device(name: str) -> torch.device:
    """auto: the GPU when torch sees one; a CUDA device always with its index (cuda:0)."""
    device = torch.device(
        name if name != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(
                "error: --device cuda but torch sees no CUDA GPU "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})"
            )
        device = torch.device("cuda", device.index or 0)
    return device


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "device": str(device),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "amp": amp_name(D.amp_dtype(device)),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env |= {
            "gpu": props.name,
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "compute_capability": f"{props.major}.{props.minor}",
            "bf16": torch.cuda.is_bf16_supported(),
            "cudnn": torch.backends.cudnn.version(),
        }
    for name in VERSIONED:
        try:
            env[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            env[name] = None
    return env
