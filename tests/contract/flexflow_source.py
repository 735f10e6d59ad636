"""FlexFlow's own files, downloaded once per machine from PyPI's source distribution.

Only what the contract tests run or read is extracted (``EXTRACT``); the cffi header
module is then generated with FlexFlow's own ``python/flexflow_cffi_build.py``, as
FlexFlow's CMake build does (``CMakeLists.txt``: ``flexflow_cffi_build.py --ffhome-dir
<root> --output-dir <root>/python/flexflow/core``). Nothing of FlexFlow is committed.

Why not ``pip download``: for an sdist pip prepares metadata by running FlexFlow's
``setup.py``, which installs cmake and ninja as build dependencies, runs
``config/config.linux`` and, when ``cargo`` is missing, ``curl https://sh.rustup.rs | sh``.
So the file is fetched from the package index's JSON API (PEP 691), the protocol pip
itself uses, and checked against the pinned SHA-256 below.

Version: 24.9.1, the last release that ships FlexFlow's training front end
(``flexflow_python``, ``TRAIN.md``, the native and PyTorch examples). Its training API
(Python classes and C functions) equals commit 89f10f4 (24.9.1+13), the source of
``ffmodel_signatures.json``; the two differ only in the serving API (see
``SERVING_DIFFERENCES`` in flexflow_facts.py). 25.2.x drops ``flexflow_python`` and
changes the keys of ``init_flexflow_runtime``.
"""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

FLEXFLOW_VERSION = "24.9.1"
SDIST_NAME = f"flexflow-{FLEXFLOW_VERSION}.tar.gz"
SDIST_SHA256 = "875278592ef7fd8b842ead27157b629475dd07e9174b2ee1aa379b5858e91784"

# Paths inside the sdist (below its top folder). FlexFlow's Python package, the files
# its header build needs (the template and the headers), the C API source, and
# Legion's legion_top.py, which the stand-in replaces (read to cross-check it).
EXTRACT = (
    "python/flexflow/",
    "python/flexflow_cffi_build.py",
    "python/flexflow_cffi_header.py.in",
    "include/flexflow/",
    "src/c/flexflow_c.cc",
    "deps/legion/bindings/python/legion_top.py",
)
_STAMP = ".flexflow-torch-complete"


class FlexFlowSourceError(RuntimeError):
    """FlexFlow's source could not be obtained (no network, no compiler, bad file)."""


@dataclass(frozen=True)
class FlexFlowSource:
    """An extracted FlexFlow tree: paths are those of FlexFlow's repository."""
    root: Path

    @property
    def python_dir(self):
        """The folder to put on sys.path for ``import flexflow``."""
        return self.root / "python"

    def path(self, relative):
        return self.root / relative

    @property
    def cffi_py(self):
        return self.root / "python/flexflow/core/flexflow_cffi.py"

    @property
    def type_py(self):
        return self.root / "python/flexflow/type.py"

    @property
    def core_init_py(self):
        return self.root / "python/flexflow/core/__init__.py"

    @property
    def c_source(self):
        return self.root / "src/c/flexflow_c.cc"

    @property
    def legion_top_py(self):
        return self.root / "deps/legion/bindings/python/legion_top.py"


def cache_dir():
    """FLEXFLOW_TORCH_CACHE, else $XDG_CACHE_HOME/flexflow-torch, else ~/.cache/flexflow-torch."""
    if os.environ.get("FLEXFLOW_TORCH_CACHE"):
        return Path(os.environ["FLEXFLOW_TORCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "flexflow-torch"


def index_url():
    """The package index to download from: PIP_INDEX_URL when set, else PyPI."""
    return os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


def ensure_flexflow_source():
    """The extracted FlexFlow tree, downloaded and prepared on first use.

    A file lock serialises concurrent callers (pytest-xdist workers); the tree is
    built in a temporary folder and renamed into place when complete."""
    base = cache_dir()
    root = base / f"flexflow-{FLEXFLOW_VERSION}"
    base.mkdir(parents=True, exist_ok=True)
    with open(base / f"flexflow-{FLEXFLOW_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / _STAMP).exists() and (root / _STAMP).read_text() == _stamp_text():
            return FlexFlowSource(root)
        shutil.rmtree(root, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f"flexflow-{FLEXFLOW_VERSION}.", dir=base))
        try:
            sdist = work / SDIST_NAME
            _download(sdist)
            tree = work / "tree"
            _extract(sdist, tree)
            _generate_header(tree)
            (tree / _STAMP).write_text(_stamp_text())
            tree.rename(root)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return FlexFlowSource(root)


def _stamp_text():
    return json.dumps({"sha256": SDIST_SHA256, "extract": EXTRACT})


def _download(target):
    url = f"{index_url()}/flexflow/"
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            files = json.load(response)["files"]
        entry = next((f for f in files if f["filename"] == SDIST_NAME), None)
        if entry is None:
            raise FlexFlowSourceError(f"{url} lists no {SDIST_NAME}")
        if entry.get("hashes", {}).get("sha256", SDIST_SHA256) != SDIST_SHA256:
            raise FlexFlowSourceError(f"{url}: {SDIST_NAME} has SHA-256 {entry['hashes']['sha256']}, "
                                      f"expected {SDIST_SHA256}")
        digest = hashlib.sha256()
        with urllib.request.urlopen(entry["url"], timeout=120) as response, open(target, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (OSError, ValueError, KeyError) as exc:      # URLError is an OSError
        raise FlexFlowSourceError(f"cannot download {SDIST_NAME} from {url}: {exc}") from exc
    if digest.hexdigest() != SDIST_SHA256:
        raise FlexFlowSourceError(f"{SDIST_NAME}: SHA-256 {digest.hexdigest()} != pinned {SDIST_SHA256}")


def _extract(sdist, tree):
    """Copy the EXTRACT members out of the archive (regular files only, no links)."""
    prefix = f"flexflow-{FLEXFLOW_VERSION}/"
    found = set()
    with tarfile.open(sdist) as archive:
        for member in archive:
            if not member.isfile() or not member.name.startswith(prefix):
                continue
            relative = member.name[len(prefix):]
            wanted = next((e for e in EXTRACT if relative == e or (e.endswith("/") and relative.startswith(e))),
                          None)
            if wanted is None or ".." in Path(relative).parts:
                continue
            found.add(wanted)
            target = tree / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.extractfile(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    missing = set(EXTRACT) - found
    if missing:
        raise FlexFlowSourceError(f"{SDIST_NAME} lacks {sorted(missing)}")


def _generate_header(tree):
    """Run FlexFlow's flexflow_cffi_build.py (it preprocesses flexflow_c.h with gcc)."""
    script = tree / "python/flexflow_cffi_build.py"
    try:
        subprocess.run([sys.executable, str(script), "--ffhome-dir", str(tree),
                        "--output-dir", str(tree / "python/flexflow/core")],
                       check=True, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as exc:
        raise FlexFlowSourceError(f"cannot run {script}: {exc}") from exc
    except subprocess.CalledProcessError as exc:
        raise FlexFlowSourceError(f"{script.name} failed (it needs gcc): {exc.stderr.strip()}") from exc
