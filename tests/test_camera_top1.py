"""The model's top-1 on the sample photos is the same through the fake Pi camera (ISP crop, YUV420 or
BGR888 lores) as from the image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.config import Picamera2SourceConfig
from edge.model.engine import Engine
from edge.model.preprocess import list_images, load_image
from edge.sources.picamera2 import Picamera2Source
from tests.support import fake_picamera2 as fake


@pytest.fixture(scope="module")
def engine(converted_model: Path) -> Engine:
    return Engine(converted_model, self_test=False, require_xnnpack=False)


@pytest.mark.parametrize("platform", [fake.Platform.VC4, fake.Platform.PISP])
def test_top1_unchanged_through_the_camera(monkeypatch: pytest.MonkeyPatch, shared: Path, engine: Engine, platform: fake.Platform) -> None:
    photos = list_images(shared / "data" / "samples")
    assert len(photos) >= 5
    for photo in photos:
        with Image.open(photo) as image:
            rgb = image.convert("RGB")
            scene = np.asarray(rgb.resize((rgb.width // 2 * 2, rgb.height // 2 * 2)))  # the sensor sees the photo
        camera = fake.FakeCamera(scene, platform=platform)
        fake.install(monkeypatch, camera)
        source = Picamera2Source(Picamera2SourceConfig(main_size=(640, 480)))
        source.open()
        frame = source.read()
        source.close()
        assert frame is not None
        want = int(np.argmax(engine.classify(load_image(photo, draft=False))))
        got = int(np.argmax(engine.classify(frame.pixels)))
        assert got == want, f"{photo.name} on {platform.name}: top-1 {got} through the camera, {want} from the file"
