"""Model sources: path, package_file, python, url (a real HTTP server on loopback), sha256 checks."""

from __future__ import annotations

import functools
import hashlib
import http.server
import sys
import threading

import pytest

from melt.errors import SourceError
from melt.recipe import Source
from melt.sources import resolve


@pytest.fixture
def http_root(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yields (base_url, folder, request log)."""
    www = tmp_path / "www"
    www.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", www, requests
    server.shutdown()
    server.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_path_is_relative_to_the_recipe(tmp_path):
    (tmp_path / "m.bin").write_bytes(b"model")
    r = resolve(Source(path="m.bin"), tmp_path)
    assert r.path == tmp_path / "m.bin" and r.sha256 == sha(b"model") and r.size_bytes == 5


def test_sha256_is_checked(tmp_path):
    (tmp_path / "m.bin").write_bytes(b"model")
    with pytest.raises(SourceError, match="differs"):
        resolve(
            Source(path="m.bin"),
            tmp_path,
            want_sha256=sha(b"other"),
            where=("r.yaml", "models[0].source.path"),
        )
    assert resolve(Source(path="m.bin"), tmp_path, want_sha256=sha(b"model").upper()).sha256 == sha(b"model")


def test_changed_file_is_rehashed(tmp_path):
    f = tmp_path / "m.bin"
    f.write_bytes(b"one")
    assert resolve(Source(path="m.bin"), tmp_path).sha256 == sha(b"one")
    f.write_bytes(b"two!")
    assert resolve(Source(path="m.bin"), tmp_path).sha256 == sha(b"two!")


def test_package_file_found_without_importing(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "fakemodels"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('importing this package is not needed')\n")
    (pkg / "data" / "m.onnx").write_bytes(b"onnx")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    r = resolve(Source(package_file="fakemodels:data/m.onnx"), tmp_path)
    assert r.path == pkg / "data" / "m.onnx" and "fakemodels" not in sys.modules


def test_missing_package_names_pip(tmp_path):
    with pytest.raises(SourceError, match="pip install melt-extra-models"):
        resolve(Source(package_file="melt_extra_models:m.gguf", pip="melt-extra-models"), tmp_path)
    with pytest.raises(SourceError, match="pip install melt-nope"):
        resolve(Source(python="melt_nope:assemble"), tmp_path)


def test_python_source_calls_the_function(tmp_path, monkeypatch):
    (tmp_path / "m.gguf").write_bytes(b"gguf")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "assembler.py").write_text(f"def assemble():\n    return {str(tmp_path / 'm.gguf')!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert resolve(Source(python="assembler:assemble"), tmp_path).sha256 == sha(b"gguf")


def test_url_downloads_once_and_verifies(tmp_path, http_root):
    base, www, requests = http_root
    (www / "tiny.onnx").write_bytes(b"x" * 3000)
    source = Source(url=f"{base}/tiny.onnx", sha256=sha(b"x" * 3000))
    first = resolve(source, tmp_path)
    second = resolve(source, tmp_path)
    assert first.path == second.path and first.path.read_bytes() == b"x" * 3000
    assert requests == ["/tiny.onnx"]  # the second resolve used the cache


def test_url_with_wrong_sha256_keeps_nothing(tmp_path, http_root):
    base, www, requests = http_root
    (www / "bad.onnx").write_bytes(b"tampered")
    with pytest.raises(SourceError, match="does not match"):
        resolve(Source(url=f"{base}/bad.onnx", sha256=sha(b"original")), tmp_path)
    with pytest.raises(SourceError, match="does not match"):  # nothing half-kept: it downloads again
        resolve(Source(url=f"{base}/bad.onnx", sha256=sha(b"original")), tmp_path)
    assert requests == ["/bad.onnx", "/bad.onnx"]


def test_url_not_found_is_a_clear_error(tmp_path, http_root):
    base, _, _ = http_root
    with pytest.raises(SourceError, match="HTTPError"):
        resolve(Source(url=f"{base}/missing.gguf"), tmp_path, where=("r.yaml", "models[0].source.url"))
