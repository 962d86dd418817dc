"""The ensemble's blend: the members' class probabilities in, one set of probabilities out.

    blend = fit_blend(member_probas, labels, members, "logreg", regularization=1.0)  # blend split
    proba = blend.combine(member_probas)   # (N, C), rows sum to 1
    blend.save(path); Blend.load(path)

Methods (`ensemble.method`):
- `logreg`: stacking. A multinomial logistic regression (scikit-learn) on the members'
  log-probabilities side by side, (N, M*C) -> C classes: it learns how far to trust each member
  on each class, and per-class intercepts. Fitted on the `blend` split, which no member used to
  choose its checkpoint, so it sees the members as they do on new drawings.
- `weights`: one non-negative weight per member on its log-probabilities plus a per-class bias
  (M + C numbers, fitted by L-BFGS on the log-loss): a geometric mean with learnt temperature.
  Robust where the blend split is small against M*C.
- `mean`: the arithmetic mean of the probabilities (nothing fitted; no blend split needed).

The fitted numbers live in a `.npz` of plain arrays (loaded with `allow_pickle=False`): no
pickled estimator, so a blend file cannot carry code.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.common.errors import PipelineError
from pipeline.common.files import atomic_file

METHODS = ("logreg", "weights", "mean")
LOG_FLOOR = 1e-6  # log-probabilities are taken of max(p, LOG_FLOOR): finite, and a member's
# "certainly not" counts the same whatever float noise it came with


def log_features(probas: Sequence[np.ndarray]) -> np.ndarray:
    """The members' log-probabilities side by side: M x (N, C) -> (N, M*C) float32."""
    return np.concatenate([np.log(np.maximum(p, LOG_FLOOR)) for p in probas], axis=1).astype(
        np.float32
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class Blend:
    members: tuple[str, ...]
    method: str
    coef: np.ndarray  # logreg: (C, M*C); weights: (M,); mean: (M,) all 1/M
    intercept: np.ndarray  # (C,) per-class bias (zeros for mean)
    classes: tuple[str, ...] = ()  # the class list it was fitted on (empty: not recorded)
    flip: tuple[str, ...] = ()  # members whose probabilities average a drawing and its mirror

    def check_classes(self, classes: Sequence[str], path: Path) -> None:
        """A blend fitted on another class list would mix up classes: refuse it with a fix."""
        n_fitted = len(self.intercept)
        if (self.classes and tuple(classes) != self.classes) or n_fitted != len(classes):
            raise PipelineError(
                f"{path} was fitted on another class list ({n_fitted} classes, the store has "
                f"{len(classes)}); rerun `dvc repro blend`"
            )

    def combine(self, probas: Sequence[np.ndarray]) -> np.ndarray:
        """M x (N, C) member probabilities (in `members` order) -> (N, C) blended."""
        if len(probas) != len(self.members):
            raise ValueError(f"blend of {len(self.members)} members given {len(probas)}")
        if self.method == "mean":
            return np.mean(probas, axis=0).astype(np.float32)
        if self.method == "weights":
            logits = sum(
                w * np.log(np.maximum(p, LOG_FLOOR)) for w, p in zip(self.coef, probas, strict=True)
            )
            return softmax(logits + self.intercept)
        return softmax(log_features(probas) @ self.coef.T + self.intercept)  # (N, C)

    def save(self, path: Path) -> None:
        with atomic_file(path, "wb") as f:
            about = json.dumps(
                {
                    "members": self.members,
                    "method": self.method,
                    "classes": self.classes,
                    "flip": self.flip,
                }
            )
            np.savez(f, coef=self.coef, intercept=self.intercept, about=np.array(about))

    @staticmethod
    def load(path: Path) -> Blend:
        if not path.is_file():
            raise PipelineError(f"no blend at {path}; run `dvc repro blend` first")
        try:
            with np.load(path, allow_pickle=False) as f:
                about = json.loads(str(f["about"]))
                blend = Blend(
                    tuple(about["members"]),
                    about["method"],
                    f["coef"],
                    f["intercept"],
                    tuple(about.get("classes", ())),
                    tuple(about.get("flip", ())),
                )
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise PipelineError(
                f"{path} is not a readable blend ({reason}); rerun `dvc repro blend`"
            ) from None
        if blend.method not in METHODS:
            raise PipelineError(
                f"{path} has an unknown blend method {blend.method!r}; rerun `dvc repro blend`"
            )
        return blend


def fit_blend(
    probas: Sequence[np.ndarray],
    labels: np.ndarray,
    members: Sequence[str],
    method: str,
    regularization: float = 1.0,
    seed: int = 0,
    classes: Sequence[str] = (),
    flip: Sequence[str] = (),
) -> Blend:
    """Fit `method` on the members' probabilities M x (N, C) of labelled drawings `labels` (N,);
    `classes` (the class list, recorded in the blend) lets readers refuse a stale blend; `flip`
    records the members whose probabilities were (and must be) taken with the mirror TTA."""
    blend = _fit(probas, labels, members, method, regularization, seed)
    return Blend(blend.members, method, blend.coef, blend.intercept, tuple(classes), tuple(flip))


def _fit(
    probas: Sequence[np.ndarray],
    labels: np.ndarray,
    members: Sequence[str],
    method: str,
    regularization: float,
    seed: int,
) -> Blend:
    n_members, n_classes = len(probas), probas[0].shape[1]
    if method == "mean":
        return Blend(tuple(members), method, np.full(n_members, 1 / n_members), np.zeros(n_classes))
    if len(labels) == 0:
        raise PipelineError(
            f"ensemble.method '{method}' is fitted on the blend split, which is empty; set "
            "preprocess.blend_per_class > 0, or ensemble.method: mean"
        )
    if method == "weights":
        coef, intercept = _fit_weights(probas, labels, n_classes)
        return Blend(tuple(members), method, coef, intercept)
    if method != "logreg":
        raise ValueError(f"unknown blend method {method!r} (known: {', '.join(METHODS)})")
    from sklearn.linear_model import LogisticRegression  # only the blend stage needs it

    x = log_features(probas)  # (N, M*C)
    present = np.unique(labels)
    if len(present) < 2:
        raise PipelineError(
            "the blend split holds one class only; raise preprocess.blend_per_class"
        )
    model = LogisticRegression(C=regularization, max_iter=1000, random_state=seed)
    model.fit(x, labels)
    coef, intercept = model.coef_, model.intercept_
    if len(present) == 2:  # sklearn's binary form: one row, the log-odds of present[1]
        coef, intercept = np.vstack([-coef, coef]) / 2, np.array([-intercept[0], intercept[0]]) / 2
    full_coef = np.zeros((n_classes, x.shape[1]), np.float32)
    full_intercept = np.full(n_classes, intercept.mean(), np.float32)
    full_coef[present], full_intercept[present] = coef, intercept
    # A class absent from the blend split (one of under 5 drawings) is treated as an average
    # class: per member, the mean weight the fitted classes give their own log-probability and
    # the mean they give the others', and the mean intercept. So it wins where the members are
    # sure of it, like any other class.
    k = len(present)
    fitted = coef.reshape(k, n_members, n_classes)[:, :, present]  # (K, M, K)
    own = np.einsum("kmk->m", fitted) / k  # (M,)
    others = (fitted.sum(axis=(0, 2)) - own * k) / max(k * (k - 1), 1)  # (M,)
    for c in np.setdiff1d(np.arange(n_classes), present):
        row = np.repeat(others, n_classes).reshape(n_members, n_classes)  # (M, C)
        row[:, c] = own
        full_coef[c] = row.ravel()
    return Blend(tuple(members), method, full_coef, full_intercept)


def _fit_weights(
    probas: Sequence[np.ndarray], labels: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Weights w >= 0 (M,) and biases b (C,) minimising the log-loss of softmax(sum w_m log p_m
    + b), by L-BFGS (torch autograd; w = softplus(u) keeps them non-negative)."""
    import torch

    logs = torch.from_numpy(np.stack([np.log(np.maximum(p, LOG_FLOOR)) for p in probas]))
    y = torch.from_numpy(labels.astype(np.int64))
    u = torch.full((len(probas),), 0.5413, requires_grad=True)  # softplus(0.5413) = 1
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([u, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        w = torch.nn.functional.softplus(u)
        logits = (w[:, None, None] * logs).sum(0) + b  # (N, C)
        loss = torch.nn.functional.cross_entropy(logits, y) + 1e-3 * (b**2).mean()
        loss.backward()
        return loss

    opt.step(closure)
    w = torch.nn.functional.softplus(u).detach().numpy()
    return w.astype(np.float32), b.detach().numpy().astype(np.float32)
