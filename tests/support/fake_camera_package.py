"""The picamera2 fake as importable `picamera2` and `libcamera` packages, for a daemon in another process (system tests)."""

from __future__ import annotations

from pathlib import Path

SUPPORT = Path(__file__).parent
IMPORT_LIBCAMERA = "from tests.support.fake_libcamera import"

# picamera2/__init__.py: the class bound to a camera built from the environment (fake_picamera2.camera_from_env).
INIT = '''"""FAKE picamera2 from mnv1-edge's tests (tests/support/fake_picamera2.py); never on a real device."""

from picamera2 import _fake, platform  # noqa: F401 - picamera2.platform is a submodule of the real package too

Picamera2 = type("Picamera2", (_fake.Picamera2,), {"camera": _fake.camera_from_env()})
MappedArray = _fake.MappedArray
CompletedRequest = _fake.CompletedRequest
'''
PLATFORM = '''"""FAKE picamera2.platform: a Pi 4 (VC4)."""

from picamera2._fake import Platform


def get_platform():
    return Platform.VC4
'''


def write_package(site_packages: Path) -> list[Path]:
    """Write `picamera2/` and `libcamera/` into `site_packages`; the paths written (remove them to uninstall)."""
    picamera2, libcamera = site_packages / "picamera2", site_packages / "libcamera"
    picamera2.mkdir(parents=True, exist_ok=True)
    libcamera.mkdir(parents=True, exist_ok=True)
    (picamera2 / "__init__.py").write_text(INIT)
    (picamera2 / "platform.py").write_text(PLATFORM)
    fake = (SUPPORT / "fake_picamera2.py").read_text()
    assert IMPORT_LIBCAMERA in fake, "fake_picamera2.py imports its ColorSpace differently now: update fake_camera_package.py"
    # One ColorSpace class for the fake and the code under test: both from the installed `libcamera`.
    (picamera2 / "_fake.py").write_text(fake.replace(IMPORT_LIBCAMERA, "from libcamera import"))
    (libcamera / "__init__.py").write_text((SUPPORT / "fake_libcamera.py").read_text())
    for path in (picamera2, libcamera, *picamera2.iterdir(), *libcamera.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return [picamera2, libcamera]
