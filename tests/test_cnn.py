"""The image family (`cnn`): logits per image, bytes and floats alike, it learns, it rebuilds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pipeline.common.config import from_dict, to_dict
from pipeline.common.errors import ConfigError, PipelineError
from pipeline.core.encoders import ImageEncoder
from pipeline.models import FAMILIES
from pipeline.models.cnn import CNN, ImageCNN, ImageConfig
from tests.conftest import member_config, tiny_params

N_CLASSES = 5


def small_config(**changes: object) -> ImageConfig:
    cfg = ImageConfig(
        image_size=32, backbone="resnet10t", dropout=0.1, max_points=64, pretrained=False
    )
    return dataclasses.replace(cfg, **changes)


def build_model(cfg: ImageConfig) -> ImageCNN:
    return CNN.build(cfg, N_CLASSES)


def images(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """(B, 3, S, S) uint8: sparse strokes-like pixels, 0 or 255 ink with some grey."""
    gen = torch.Generator().manual_seed(seed)
    ink = torch.rand(batch, 1, size, size, generator=gen) < 0.1
    grey = torch.randint(0, 256, (batch, 3, size, size), generator=gen, dtype=torch.uint8)
    return torch.where(ink, grey, torch.zeros((), dtype=torch.uint8))


def test_registered_and_fed_images_of_its_size() -> None:
    assert FAMILIES["cnn"] is CNN and CNN.fixed_shape
    assert CNN.encoder(small_config(image_size=40)) == ImageEncoder(max_points=64, image_size=40)


@pytest.mark.parametrize("backbone", ["resnet10t", "convnext_atto"])
@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("batch", [1, 3])
def test_forward_gives_logits_per_image(backbone: str, size: int, batch: int) -> None:
    net = build_model(small_config(backbone=backbone, image_size=size)).eval()
    x = images(batch, size)
    assert net(x).shape == (batch, N_CLASSES)
    assert net(x, torch.ones(batch, dtype=torch.int64)).shape == (batch, N_CLASSES)  # lengths


def test_bytes_and_floats_give_the_same_logits() -> None:
    net = build_model(small_config()).eval()
    x = images(4, 32)
    torch.testing.assert_close(net(x), net(x.float() / 255), rtol=1e-5, atol=1e-5)


def test_a_few_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    net = build_model(small_config(dropout=0.0, image_size=16)).train()
    x, y = images(8, 16, seed=1), torch.arange(8) % N_CLASSES
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(4):
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_config_round_trips_through_its_dict() -> None:
    cfg = small_config(backbone="convnext_atto", dropout=0.2)
    net = build_model(cfg).eval()
    again = build_model(from_dict(ImageConfig, to_dict(cfg), "model_cfg")).eval()
    assert isinstance(again, ImageCNN) and again.cfg == cfg
    again.load_state_dict(net.state_dict())  # same architecture, key for key
    x = images(2, 32)
    torch.testing.assert_close(again(x), net(x))


def test_a_members_keys_make_its_config() -> None:
    params = tiny_params()
    params["members"]["cnn"] |= {"image_size": 48, "dropout": 0.3, "epochs": 5}
    member = member_config(params, "cnn")
    assert member.model_cfg == ImageConfig(48, "resnet10t", 0.3, 128, False)
    assert member.train.epochs == 5  # a train key the member overrides


def test_unknown_backbone_names_the_param() -> None:
    params = tiny_params()
    params["members"]["cnn"]["backbone"] = "no_such_net"
    with pytest.raises(ConfigError, match=r"members\.cnn\.backbone.*timm model name"):
        member_config(params, "cnn")


# ---------------------------------------------------------------- pretrained starting weights


def timm_weights(path: Path, backbone: str = "resnet10t", seed: int = 1) -> dict[str, torch.Tensor]:
    """A weights file as someone would save timm's: a 1000-class backbone's state dict."""
    from pipeline.models.cnn import _timm

    torch.manual_seed(seed)
    state = _timm().create_model(backbone, pretrained=False).state_dict()
    torch.save(state, path)
    return state


def test_a_weights_file_is_where_training_starts(tmp_path: Path) -> None:
    # Every backbone weight comes from the file; the classifier is new, sized to our classes.
    state = timm_weights(tmp_path / "resnet10t.pth")
    net = build_model(small_config(pretrained=str(tmp_path / "resnet10t.pth")))
    own = net.backbone.state_dict()
    assert own["fc.weight"].shape == (N_CLASSES, state["fc.weight"].shape[1])
    for name, value in state.items():
        if not name.startswith("fc."):
            torch.testing.assert_close(own[name], value, msg=name)
    scratch = build_model(small_config())  # from scratch: other weights
    assert not torch.equal(scratch.backbone.state_dict()["conv1.0.weight"], own["conv1.0.weight"])


def test_a_checkpoint_loads_without_its_starting_weights(tmp_path: Path) -> None:
    # The architecture alone: the file may be gone, and a `true` would need no download.
    timm_weights(tmp_path / "w.pth")
    cfg = small_config(pretrained=str(tmp_path / "w.pth"))
    trained = build_model(cfg).state_dict()
    (tmp_path / "w.pth").unlink()
    skeleton = CNN.skeleton(cfg, N_CLASSES)
    skeleton.load_state_dict(trained)
    online = CNN.skeleton(small_config(pretrained=True), N_CLASSES)  # no network touched
    assert isinstance(online, ImageCNN)


def test_the_starting_weights_are_part_of_the_fingerprint(tmp_path: Path) -> None:
    timm_weights(tmp_path / "a.pth", seed=1)
    timm_weights(tmp_path / "b.pth", seed=2)
    sources = {
        CNN.starting_weights(small_config(pretrained=p))
        for p in (False, True, str(tmp_path / "a.pth"), str(tmp_path / "b.pth"))
    }
    assert len(sources) == 4 and None in sources and "timm:resnet10t" in sources


def test_without_internet_pretrained_true_is_one_line_saying_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As a machine with no network: nothing is fetched. huggingface_hub reads the variable when
    # it is first imported (an earlier test may have done so), so its constant is set too.
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PipelineError) as err:
        build_model(small_config(pretrained=True))
    text = str(err.value)
    assert "could not get timm's pretrained weights for 'resnet10t'" in text
    assert "members.<name>.pretrained" in text and "\n" not in text


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no weights file"), (b"not a pickle", "not a readable weights file")],
)
def test_a_missing_or_damaged_weights_file_is_one_line(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "w.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PipelineError, match=message):
        build_model(small_config(pretrained=str(path)))


def test_weights_of_another_backbone_are_refused(tmp_path: Path) -> None:
    timm_weights(tmp_path / "other.pth", backbone="convnext_atto")
    with pytest.raises(PipelineError, match=r"does not hold weights of a resnet10t"):
        build_model(small_config(pretrained=str(tmp_path / "other.pth")))
