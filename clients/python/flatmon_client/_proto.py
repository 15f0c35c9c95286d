"""The flatmon.v1 protobuf modules, generated from the repository's proto/ with protoc on first use.

protoc writes into flatmon_client/_generated/ (git-ignored). The output is regenerated when a
.proto file is newer than the generated code. Generation happens in a temporary directory that is
renamed into place, so several trainers importing the client at once do not race.

Environment overrides: FLATMON_PROTO_DIR (directory containing flatmon/v1/*.proto), FLATMON_PROTOC
(the protoc binary; default /usr/bin/protoc, else protoc on PATH).
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_PKG = Path(__file__).resolve().parent
_GENERATED = _PKG / "_generated"
_STAMP = _GENERATED / ".stamp"


def proto_dir():
    env = os.environ.get("FLATMON_PROTO_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(_PKG.parents[2] / "proto")     # <repo>/clients/python/flatmon_client -> <repo>/proto
    for c in candidates:
        if (c / "flatmon" / "v1" / "telemetry.proto").is_file():
            return c
    raise RuntimeError("flatmon_client: cannot find the flatmon .proto files (looked in %s); set FLATMON_PROTO_DIR "
                       "to the directory that contains flatmon/v1/telemetry.proto" % ", ".join(map(str, candidates)))


def protoc():
    env = os.environ.get("FLATMON_PROTOC")
    if env:
        return env
    if os.access("/usr/bin/protoc", os.X_OK):
        return "/usr/bin/protoc"
    found = shutil.which("protoc")
    if found:
        return found
    raise RuntimeError("flatmon_client: protoc not found; install it (Debian: apt-get install protobuf-compiler) "
                       "or set FLATMON_PROTOC")


def _sources(pdir):
    return sorted((pdir / "flatmon" / "v1").glob("*.proto"))


def _up_to_date(pdir):
    if not _STAMP.is_file():
        return False
    stamp = _STAMP.stat().st_mtime
    return all(p.stat().st_mtime <= stamp for p in _sources(pdir))


def generate(force=False):
    """Runs protoc on proto/flatmon/v1/*.proto into flatmon_client/_generated unless it is up to date."""
    pdir = proto_dir()
    if not force and _up_to_date(pdir):
        return _GENERATED
    tmp = Path(tempfile.mkdtemp(prefix=".gen-", dir=str(_PKG)))
    try:
        files = [str(p.relative_to(pdir)) for p in _sources(pdir)]
        try:
            subprocess.run([protoc(), "-I", str(pdir), "--python_out", str(tmp)] + files, check=True,
                           cwd=str(pdir), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except subprocess.CalledProcessError as e:
            raise RuntimeError("flatmon_client: protoc failed: %s" % e.stderr.decode(errors="replace")) from e
        for d in (tmp / "flatmon", tmp / "flatmon" / "v1"):
            (d / "__init__.py").touch()
        (tmp / ".stamp").touch()
        os.chmod(str(tmp), 0o755)
        old = None
        if _GENERATED.exists():
            old = Path(tempfile.mkdtemp(prefix=".old-", dir=str(_PKG)))
            try:
                os.rename(str(_GENERATED), str(old / "g"))
            except OSError:
                pass                      # another process replaced it first
        try:
            os.rename(str(tmp), str(_GENERATED))
        except OSError:
            if not _GENERATED.exists():   # lost a race with another process: its output is as good
                raise
        if old is not None:
            shutil.rmtree(str(old), ignore_errors=True)
    finally:
        shutil.rmtree(str(tmp), ignore_errors=True)
    return _GENERATED


def load():
    """Imports and returns (tensor_pb2, policy_pb2, telemetry_pb2, results_pb2)."""
    gen = generate()
    if str(gen) not in sys.path:
        sys.path.insert(0, str(gen))
    from flatmon.v1 import tensor_pb2, policy_pb2, telemetry_pb2, results_pb2  # noqa: E402
    return tensor_pb2, policy_pb2, telemetry_pb2, results_pb2


if __name__ == "__main__":
    print(generate(force="--force" in sys.argv))
