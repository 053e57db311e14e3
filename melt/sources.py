"""Model sources: where a model file comes from, resolved on the host to a local path + sha256.

Kinds: `path` (relative to the recipe), `package_file` ("pkg:rel/path", a file inside an
installed Python package), `python` ("module:function", a function returning a path), and
`url` (downloaded once into a cache, sha256-verified).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from melt.errors import Problem, SourceError

if TYPE_CHECKING:
    from melt.recipe import Source

KINDS = ("path", "package_file", "python", "url")


def cache_dir() -> Path:
    """Host-side cache for downloads and file hashes (MELT_CACHE overrides, for tests and CI)."""
    root = os.environ.get("MELT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "melt"
    )
    return Path(root)


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    sha256: str
    size_bytes: int
    source_kind: str
    source_ref: str

    def to_json(self) -> dict:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "source": {self.source_kind: self.source_ref},
        }


def _pip_name(source: Source, module: str) -> str:
    return source.pip or module.split(".")[0].replace("_", "-")


def _split(ref: str, what: str) -> tuple[str, str]:
    module, sep, rest = ref.partition(":")
    if not sep or not module or not rest:
        raise ValueError(f"'{what}' as 'module:{'path' if what == 'package_file' else 'function'}'")
    return module, rest


def _package_dir(module: str) -> Path | None:
    """Folder of an installed package, found without importing it (imports can be heavy)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent if spec.origin else None


def check(source: Source, base: Path) -> tuple[str, str, str] | None:
    """Cheap existence check for `melt validate` (nothing is downloaded, assembled or written).

    Returns (expected, found, hint) for a problem, None when the source looks resolvable.
    """
    kind, ref = source.kind, source.ref
    if kind == "path":
        path = (base / os.path.expanduser(ref)).resolve()
        if not path.is_file():
            return "a model file (relative to the recipe)", f"no file {path}", ""
    elif kind in ("package_file", "python"):
        try:
            module, rest = _split(ref, kind)
        except ValueError as e:
            return str(e), repr(ref), ""
        package = _package_dir(module.split(".")[0])
        if package is None:
            pip = _pip_name(source, module)
            return (
                f"an installed Python package '{module.split('.')[0]}'",
                "none",
                f" (install it: pip install {pip})",
            )
        if kind == "package_file" and not (package / rest).is_file():
            return f"a file {rest} inside package {module}", f"no file {package / rest}", ""
    elif kind == "url" and not ref.startswith(("http://", "https://", "file://")):
        return "an http(s):// or file:// URL", repr(ref), ""
    return None


def locate(source: Source, base: Path) -> Path | None:
    """The model file where it is already on this machine, found without downloading, assembling
    or hashing anything (for `melt validate`); None for a python source or a url not yet downloaded."""
    if check(source, base):
        return None
    kind, ref = source.kind, source.ref
    if kind == "path":
        return (base / os.path.expanduser(ref)).resolve()
    if kind == "package_file":
        module, rest = _split(ref, kind)
        return _package_dir(module.split(".")[0]) / rest
    if kind == "url":
        cached = _download_target(ref, cache_dir() / "downloads")
        return cached if cached.is_file() else None
    return None


def _problem(where: tuple[str, str], expected: str, found: str, hint: str = "") -> SourceError:
    return SourceError(Problem(where[0], where[1], expected, found), hint)


class HashCache:
    """sha256 of files keyed by (path, size, mtime_ns), so an unchanged 250 MB file is not re-read."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.entries = json.loads(path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def sha256(self, file: Path) -> str:
        st = file.stat()
        key = str(file.resolve())
        stamp = [st.st_size, st.st_mtime_ns]
        entry = self.entries.get(key)
        if entry and entry[:2] == stamp:
            return entry[2]
        digest = sha256_file(file)
        self.entries[key] = stamp + [digest]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries))
        tmp.replace(self.path)
        return digest


def sha256_file(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _download_target(url: str, downloads: Path) -> Path:
    name = os.path.basename(url.split("?", 1)[0]) or "model.bin"
    return downloads / hashlib.sha256(url.encode()).hexdigest()[:16] / name


def _download(
    url: str, want_sha256: str | None, downloads: Path, where: tuple[str, str], timeout_s: float = 60.0
) -> Path:
    """Download once into downloads/<sha256-of-url>/<name>; verify; keep only complete files."""
    target = _download_target(url, downloads)
    folder = target.parent
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=".part-")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as resp:
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
        if want_sha256 and h.hexdigest() != want_sha256.lower():
            raise SourceError(
                Problem(
                    where[0],
                    where[1].split(".source")[0] + ".sha256",
                    want_sha256.lower(),
                    f"{h.hexdigest()} (downloaded from {url})",
                ),
                "The download does not match the recipe's sha256: fix the recipe or the server.",
            )
        os.replace(tmp_name, target)
    except (urllib.error.URLError, OSError) as e:
        raise _problem(where, "a downloadable URL", f"{url}: {type(e).__name__}: {e}") from None
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def resolve(
    source: Source, base: Path, want_sha256: str | None = None, where: tuple[str, str] = ("recipe", "source")
) -> ResolvedModel:
    """Turn a source into a local file, verify its sha256 when one is given, and record it.

    where: (file, key) that errors name, e.g. (recipe path, "models[0].source").
    """
    want = (want_sha256 or source.sha256 or "").lower() or None
    kind, ref = source.kind, source.ref
    problem = check(source, base)
    if problem:
        raise _problem(where, *problem)
    if kind == "path":
        path = (base / os.path.expanduser(ref)).resolve()
    elif kind == "package_file":
        module, rest = _split(ref, kind)
        path = _package_dir(module.split(".")[0]) / rest
    elif kind == "python":
        module, func = _split(ref, kind)
        try:
            result = getattr(importlib.import_module(module), func)()
        except (ImportError, AttributeError) as e:
            raise _problem(where, f"a function {func} in module {module}", str(e)) from None
        path = Path(result)
        if not path.is_file():
            raise _problem(where, f"{ref}() to return a model file", repr(result))
    else:
        path = _download(ref, want, cache_dir() / "downloads", where)
    hashes = HashCache(cache_dir() / "sha256.json")
    digest = hashes.sha256(path)
    if want and digest != want:
        raise SourceError(
            Problem(where[0], where[1].split(".source")[0] + ".sha256", want, f"{digest} (of {path})"),
            "The model file differs from the one the recipe names: fix the sha256 or the file.",
        )
    return ResolvedModel(
        path=path.resolve(), sha256=digest, size_bytes=path.stat().st_size, source_kind=kind, source_ref=ref
    )
