"""The pinned footage: scenes.json and one sha256 list per repository; download or copy, always verified."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "scenes.json"
RAW_URL = "https://raw.githubusercontent.com"  # <base>/<owner>/<name>/<commit>/<path>
URL_ENV = "MNV1_EDGE_FOOTAGE_URL"  # another base (a mirror; the tests' loopback server)
DOWNLOADS = 8  # files fetched at once: small frames, latency-bound
ATTEMPTS = 3


class FootageError(Exception):
    """One line naming the file or setting and what to do."""


@dataclass(frozen=True)
class Source:
    """One public repository that vendors benchmark footage, pinned at a commit."""

    key: str
    repo: str  # owner/name on GitHub
    commit: str
    sums: Path  # "<sha256>  <path>" per line, sha256sum's format: every file used, nothing else
    benchmark: str
    cite: str
    terms: str

    @property
    def folder(self) -> str:
        """The repository's folder under a work or --from directory (the `fetch` tool's naming)."""
        return self.repo.replace("/", "+")

    def files(self) -> dict[str, str]:
        """path -> sha256, as pinned."""
        pinned: dict[str, str] = {}
        for number, line in enumerate(self.sums.read_text(encoding="utf-8").splitlines(), 1):
            digest, sep, path = line.partition("  ")
            if not sep or len(digest) != 64:
                raise FootageError(f"{self.sums}:{number}: expected '<sha256>  <path>', got {line!r}")
            pinned[path] = digest
        return pinned


@dataclass(frozen=True)
class Scene:
    """One fixed-camera sequence, the region a user would draw round where the subject appears."""

    name: str
    title: str
    source: Source
    input: str  # path pattern with {n}: the frame number
    groundtruth: str
    first: int  # the benchmark's evaluated frames (its temporal ROI), inclusive
    last: int
    size: tuple[int, int]  # width, height of the frames, checked when they are read
    region: tuple[int, int, int]  # x, y, side in pixels: square, the model's 128x128 aspect
    fps: float  # frame number -> capture time
    notes: str = ""

    def numbers(self) -> range:
        return range(self.first, self.last + 1)

    def roi(self) -> tuple[float, float, float, float]:
        """The region as `source.roi` fractions (x, y, width, height of the frame)."""
        (w, h), (x, y, side) = self.size, self.region
        return (x / w, y / h, side / w, side / h)

    def paths(self) -> Iterator[str]:
        for n in self.numbers():
            yield self.input.format(n=n)
            yield self.groundtruth.format(n=n)


@dataclass(frozen=True)
class Case:
    """What one row group of the table measures: a scene, the frames trained on and those measured."""

    name: str
    title: str
    scene: Scene
    train_before: int  # training frames are numbered below this ...
    test_from: int  # ... and every labelled frame from this one on is measured
    train_from: int | None = None  # (e.g. only frames with the lights on)
    later_light: float = 1.0  # the measured frames re-lit to this share of the scene's light (prepare.dim): light that changed after training


@dataclass(frozen=True)
class Manifest:
    sources: dict[str, Source]
    scenes: dict[str, Scene]
    cases: dict[str, Case]


def load(path: Path = MANIFEST) -> Manifest:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        sources = {k: _source(k, v, path.parent) for k, v in data["sources"].items()}
        scenes = {s["name"]: _scene(s, sources) for s in data["scenes"]}
        cases = {name: _half(scene) for name, scene in scenes.items()}
        for c in data.get("cases", []):
            start = None if c.get("train_from") is None else int(c["train_from"])
            light = float(c.get("later_light", 1.0))
            cases[c["name"]] = Case(c["name"], c["title"], scenes[c["scene"]], int(c["train_before"]), int(c["test_from"]), start, light)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FootageError(f"{path}: not a footage manifest ({type(exc).__name__}: {exc})") from exc
    return Manifest(sources, scenes, cases)


def _half(scene: Scene) -> Case:
    """Every scene's own case: trained on the first half of its evaluated frames in time, measured on every later one."""
    half = scene.first + (scene.last - scene.first + 1) // 2
    return Case(scene.name, scene.title, scene, half, half)


def _source(key: str, d: dict[str, Any], base: Path) -> Source:
    return Source(key, d["repo"], d["commit"], base / d["sums"], d["benchmark"], d["cite"], d["terms"])


def _scene(d: dict[str, Any], sources: dict[str, Source]) -> Scene:
    w, h = d["size"]
    x, y, side = d["region"]
    return Scene(
        d["name"], d["title"], sources[d["source"]], d["input"], d["groundtruth"], int(d["first"]), int(d["last"]),
        (int(w), int(h)), (int(x), int(y), int(side)), float(d["fps"]), d.get("notes", ""),
    )  # fmt: skip


def local_path(work: Path, source: Source, path: str) -> Path:
    """Where a verified file lives under the work directory."""
    return work / "sources" / source.folder / path


def fetch(work: Path, scenes: list[Scene], copies: list[Path], base_url: str | None = None) -> int:
    """Bring every file of `scenes` into `work`, verified against its pin; from local `copies` (a
    clone, an extracted archive or a bare git directory) when given, else downloaded. Returns the
    number of files that were not already there."""
    todo: list[tuple[Source, str, str]] = []
    for scene in scenes:
        pinned = scene.source.files()
        for path in scene.paths():
            if path not in pinned:
                raise FootageError(f"{scene.source.sums}: no sha256 for {path} (scene {scene.name}); pin it with `pin`")
            target = local_path(work, scene.source, path)
            if not target.is_file() or _sha256(target.read_bytes()) != pinned[path]:
                todo.append((scene.source, path, pinned[path]))
    todo = list(dict.fromkeys(todo))
    if not todo:
        return 0
    if copies:
        _copy_all(work, todo, copies)
    else:
        _download_all(work, todo, base_url or os.environ.get(URL_ENV) or RAW_URL)
    return len(todo)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _store(work: Path, source: Source, path: str, digest: str, data: bytes, origin: str) -> None:
    got = _sha256(data)
    if got != digest:
        raise FootageError(f"{origin}: sha256 {got} is not the pinned {digest} ({source.repo}@{source.commit[:12]}:{path}); refusing it")
    target = local_path(work, source, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def _download_all(work: Path, todo: list[tuple[Source, str, str]], base: str) -> None:
    print(f"downloading {len(todo)} files from {base} (pinned commits, each checked against its sha256)", file=sys.stderr, flush=True)

    def one(item: tuple[Source, str, str]) -> None:
        source, path, digest = item
        url = f"{base.rstrip('/')}/{source.repo}/{source.commit}/{urllib.parse.quote(path)}"
        _store(work, source, path, digest, _get(url), url)

    with ThreadPoolExecutor(DOWNLOADS) as pool:
        for done, _ in enumerate(pool.map(one, todo), 1):
            if done % 500 == 0 or done == len(todo):
                print(f"  {done}/{len(todo)}", file=sys.stderr, flush=True)


def _get(url: str) -> bytes:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                data: bytes = response.read()
                expected = response.headers.get("Content-Length")
            if expected is not None and expected.isdigit() and len(data) != int(expected):
                raise OSError(f"truncated: {len(data)} of {expected} bytes")
            return data
        except urllib.error.HTTPError as exc:
            if exc.code == 404 or attempt == ATTEMPTS:
                raise FootageError(f"{url}: download failed (HTTP {exc.code}); pass --from DIR with a local copy instead") from exc
        except (urllib.error.URLError, OSError) as exc:
            if attempt == ATTEMPTS:
                reason = getattr(exc, "reason", None) or exc
                raise FootageError(f"{url}: download failed ({reason}); pass --from DIR with a local copy instead") from exc
    raise AssertionError("unreachable")


def _copy_all(work: Path, todo: list[tuple[Source, str, str]], copies: list[Path]) -> None:
    by_source: dict[Source, list[tuple[str, str]]] = {}
    for source, path, digest in todo:
        by_source.setdefault(source, []).append((path, digest))
    for source, files in by_source.items():
        root = _find_copy(source, copies)
        print(f"copying {len(files)} files of {source.repo} from {root}", file=sys.stderr, flush=True)
        if _is_git_dir(root):
            for (path, digest), data in zip(files, _git_blobs(root, source.commit, [p for p, _ in files]), strict=True):
                _store(work, source, path, digest, data, f"{root}: {source.commit[:12]}:{path}")
        else:
            for path, digest in files:
                try:
                    data = (root / path).read_bytes()
                except OSError as exc:
                    raise FootageError(f"{root / path}: cannot read ({exc.strerror}); is {root} a copy of {source.repo}?") from exc
                _store(work, source, path, digest, data, str(root / path))


def _find_copy(source: Source, copies: list[Path], git_only: bool = False) -> Path:
    """The local copy of `source` among the --from folders (DIR/<owner>+<name>[/repo], DIR/<name> or DIR
    itself): a git directory, read at the pinned commit, or else a folder holding the files."""
    name = source.repo.split("/")[1]
    for base in copies:
        for candidate in (base / source.folder / "repo", base / source.folder, base / name, base):
            if _is_git_dir(candidate):
                return candidate
            if (candidate / ".git").is_dir():
                return candidate / ".git"
            if not git_only and _holds(candidate, source):
                return candidate
    where = ", ".join(str(c) for c in copies)
    kind = "git directory" if git_only else "copy"
    raise FootageError(f"--from {where}: no {kind} of {source.repo} (looked for <DIR>/{source.folder}, <DIR>/{name} and <DIR> itself)")


def _holds(folder: Path, source: Source) -> bool:
    first = next(iter(source.files()), "")
    return bool(first) and (folder / first).is_file()


def _is_git_dir(folder: Path) -> bool:
    return (folder / "HEAD").is_file() and (folder / "objects").is_dir()


def _git_blobs(git_dir: Path, commit: str, paths: list[str]) -> Iterator[bytes]:
    """The files at `commit`, read from a (bare) git directory with one `git cat-file --batch`."""
    git = shutil.which("git")
    if git is None:
        raise FootageError(f"{git_dir}: reading a git directory needs git (apt-get install git), or pass an extracted copy")
    request = "".join(f"{commit}:{p}\n" for p in paths).encode()
    proc = subprocess.run([git, f"--git-dir={git_dir}", "cat-file", "--batch"], input=request, capture_output=True, check=False)
    if proc.returncode != 0:
        raise FootageError(f"{git_dir}: git cat-file failed ({proc.stderr.decode(errors='replace').strip()})")
    out, pos = proc.stdout, 0
    for path in paths:
        end = out.index(b"\n", pos)
        header = out[pos:end].decode(errors="replace").split()
        if len(header) != 3 or header[1] != "blob":
            raise FootageError(f"{git_dir}: {commit[:12]}:{path} is missing ({' '.join(header)}); fetch that commit")
        size = int(header[2])
        yield out[end + 1 : end + 1 + size]
        pos = end + 1 + size + 1


def pin(source: Source, scenes: list[Scene], copy: Path) -> int:
    """Write `source`'s sums file from a git directory of it, read at the pinned commit: every file the scenes use."""
    git_dir = _find_copy(source, [copy], git_only=True)
    paths = sorted({p for scene in scenes if scene.source == source for p in scene.paths()})
    lines = [f"{_sha256(data)}  {path}\n" for path, data in zip(paths, _git_blobs(git_dir, source.commit, paths), strict=True)]
    source.sums.parent.mkdir(parents=True, exist_ok=True)
    source.sums.write_text("".join(lines), encoding="utf-8")
    return len(lines)
