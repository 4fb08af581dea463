"""The model store: immutable versions, an atomic `current` pointer, verified loading.

Layout under the store root:
    versions/<version>/model.joblib     the fitted scikit-learn pipeline, calibration and thresholds
    versions/<version>/scorer.bin       the same model as raw arrays: idf, stacked weights, calibration
    versions/<version>/scorer.json      its vocabularies (word index tokens, character n-grams), taxonomy
    versions/<version>/metadata.json    version, labels, thresholds, digests, metrics, libraries
    CURRENT                             the current version's name (replaced atomically)
    .tmp/                               versions being written; renamed into versions/ when whole

Scoring loads only the scorer files (raw little-endian arrays laid out as scorer.json says, and
JSON): no pickle and no scikit-learn, so `crimetag predict` starts in a tenth of a second. Each
scorer file is read once: its digest is checked and its arrays are viewed from the same bytes. Every file's SHA-256 (and, with a signing key,
the HMAC of the metadata) is checked before anything is read, and the pipeline is unpickled only
on request (`load(with_pipeline=True)`): joblib loading runs code, so only files this tool wrote
are loaded.
"""
from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import shutil
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .errors import IncompatibleModel, IntegrityError, ModelNotFound, StoreError
from .labels import Taxonomy
from .tagger import Tagger

FORMAT_VERSION = 2
MODEL_FILE, META_FILE, CURRENT = "model.joblib", "metadata.json", "CURRENT"
ARRAYS_FILE, SCORER_FILE = "scorer.bin", "scorer.json"
MODEL_FILES = (MODEL_FILE, ARRAYS_FILE, SCORER_FILE)
ARRAYS = ("idf", "W", "b", "calibration", "thresholds")
INDEX_ARRAYS = ("uni_col", "pair_keys", "pair_cols")
STALE_TMP_SECONDS = 24 * 3600


def default_model_dir() -> str:
    """$CRIMETAG_MODEL_DIR, else $XDG_DATA_HOME/crimetag/models, else ~/.local/share/crimetag/models."""
    if os.environ.get("CRIMETAG_MODEL_DIR"):
        return os.environ["CRIMETAG_MODEL_DIR"]
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "crimetag", "models")


_VERSIONS: dict = {}
LIBRARIES = ("scikit-learn", "numpy", "scipy", "joblib")


def library_versions(only: str | None = None) -> dict:
    """Versions recorded with every model; scikit-learn's decides whether it can be loaded.

    Read from the installed distributions' metadata (and cached), so checking a model imports
    nothing; `only` looks up one distribution, which is all loading needs.
    """
    import platform

    _VERSIONS.setdefault("python", platform.python_version())
    for dist in (only,) if only else LIBRARIES:
        if dist not in _VERSIONS:
            _VERSIONS[dist] = _installed_version(dist)
    return dict(_VERSIONS)


def _installed_version(dist: str) -> str:
    """`dist`'s version from the name of its .dist-info directory on sys.path, as importlib.metadata
    finds it, without the 20-30 ms importing importlib.metadata adds to every `crimetag predict`;
    importlib.metadata itself for anything else (an egg, a zip)."""
    import glob
    import re
    import sys

    name = re.sub(r"[-_.]+", "_", dist).lower()  # how wheels name their .dist-info directories
    for entry in sys.path:
        found = sorted(glob.glob(os.path.join(glob.escape(entry or os.curdir), f"{name}-*.dist-info")))
        if found:
            return os.path.basename(found[0])[len(name) + 1:-len(".dist-info")]
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sign(metadata: dict, key: str) -> str:
    """HMAC-SHA256 of the metadata (which holds the model file's digest), signature excluded."""
    body = json.dumps({k: v for k, v in metadata.items() if k != "signature"}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True).encode()
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


_ALIGN = 64
_DTYPES = {"<f8": np.float64, "<i8": np.int64}


def _pack(arrays: dict) -> tuple[bytes, dict]:
    """Arrays as one little-endian byte string (each 64-byte aligned) and its layout."""
    parts, layout, offset = [], {}, 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a, dtype=np.float64 if np.asarray(a).dtype.kind == "f" else np.int64)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        pad = -offset % _ALIGN
        parts += [b"\0" * pad, a.tobytes()]
        offset += pad
        layout[name] = {"offset": offset, "dtype": a.dtype.str, "shape": list(a.shape)}
        offset += a.nbytes
    return b"".join(parts), layout


def _unpack(blob: bytes, layout: dict) -> dict:
    """Read-only views of the arrays of `blob` (no copy); a bad layout is a ValueError or KeyError."""
    out = {}
    for name, spec in layout.items():
        dtype = _DTYPES[spec["dtype"]]
        shape = tuple(int(d) for d in spec["shape"])
        count = int(np.prod(shape)) if shape else 1
        out[name] = np.frombuffer(blob, dtype=dtype, count=count, offset=int(spec["offset"])).reshape(shape)
    return out


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


class ModelStore:
    """A directory of model versions; every write is to a temporary path renamed into place."""

    def __init__(self, root: str | Path, *, signing_key: str | None = None):
        self.root = Path(root)
        self.signing_key = signing_key or None

    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    # -- writing ------------------------------------------------------------------------------
    def save(self, tagger: Tagger, metadata: dict, *, make_current: bool = True) -> str:
        """Write a new immutable version and (by default) make it current; returns its name."""
        if tagger.pipeline is None:
            raise ValueError("a tagger loaded without its pipeline cannot be saved: load it with_pipeline=True")
        tmp_root = self.root / ".tmp"
        try:
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            tmp_root.mkdir(parents=True, exist_ok=True)
            self._sweep_tmp(tmp_root)
            tmp = tmp_root / uuid.uuid4().hex
            tmp.mkdir()
        except OSError as exc:
            raise StoreError(f"cannot write to model store {self.root}: {exc.strerror or exc}") from None
        try:
            import joblib

            artifact = {"format": FORMAT_VERSION, "pipeline": tagger.pipeline,
                        "calibration": tagger.calibration, "thresholds": tagger.thresholds,
                        "taxonomy": tagger.taxonomy.to_records(), "embedding": tagger.embedding}
            joblib.dump(artifact, tmp / MODEL_FILE)
            with open(tmp / MODEL_FILE, "rb+") as fh:
                os.fsync(fh.fileno())
            blob, layout = _pack({**{name: getattr(tagger, name) for name in ARRAYS},
                                  **{name: tagger.index[name] for name in INDEX_ARRAYS}})
            _write_file(tmp / ARRAYS_FILE, blob)
            scorer = {"format": FORMAT_VERSION, "taxonomy": tagger.taxonomy.to_records(),
                      "char_terms": tagger.char_terms, "index_tokens": tagger.index["tokens"],
                      "arrays": layout, "embedding": tagger.embedding}
            _write_file(tmp / SCORER_FILE, json.dumps(scorer, ensure_ascii=False).encode("utf-8"))
            files = {name: sha256_file(tmp / name) for name in MODEL_FILES}
            digest = files[MODEL_FILE]
            now = datetime.now(timezone.utc)
            base = f"{now:%Y%m%d-%H%M%S}-{digest[:8]}"
            for attempt in range(100):
                version = base if attempt == 0 else f"{base}-{attempt}"
                meta = {**metadata, "version": version, "created": now.isoformat(timespec="seconds"),
                        "format": FORMAT_VERSION, "model_sha256": digest, "files": files,
                        "labels": [{**rec, "threshold": float(t)} for rec, t in
                                   zip(tagger.taxonomy.to_records(), tagger.thresholds)],
                        "libraries": library_versions()}
                if self.signing_key:
                    meta["signature"] = sign(meta, self.signing_key)
                _write_file(tmp / META_FILE, json.dumps(meta, indent=2, sort_keys=True).encode())
                _fsync_dir(tmp)
                try:
                    os.rename(tmp, self.versions_dir / version)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
            else:
                raise StoreError(f"could not find a free version name in {self.versions_dir}")
            _fsync_dir(self.versions_dir)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreError(f"cannot write model to {self.root}: {exc.strerror or exc}; nothing was changed") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if make_current:
            self.use(version, _verified=True)
        return version

    def use(self, version: str, *, _verified: bool = False) -> None:
        """Make `version` current, atomically; it is verified first so a bad one is never current."""
        if not _verified:
            self.read_metadata(version, verify_model=True)
        tmp = self.root / f".{CURRENT}.{uuid.uuid4().hex}"
        try:
            _write_file(tmp, (version + "\n").encode())
            os.replace(tmp, self.root / CURRENT)
            _fsync_dir(self.root)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot switch current model in {self.root}: {exc.strerror or exc}") from None

    def _sweep_tmp(self, tmp_root: Path) -> None:
        """Remove what killed trains left behind long ago (a live train's temp files are young):
        version directories under .tmp/, and CURRENT files written but never renamed into place."""
        cutoff = time.time() - STALE_TMP_SECONDS
        for entry in [*tmp_root.iterdir(), *self.root.glob(f".{CURRENT}.*")]:
            try:
                if entry.stat().st_mtime < cutoff:
                    if entry.is_dir():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink()
            except OSError:
                pass

    # -- reading ------------------------------------------------------------------------------
    def current_version(self) -> str:
        """The current version's name; ModelNotFound when the store has none."""
        if not self.root.exists():
            raise ModelNotFound(f"model store {self.root} does not exist",
                                hint="run `crimetag train` or set CRIMETAG_MODEL_DIR")
        try:
            version = (self.root / CURRENT).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ModelNotFound(f"no current model in {self.root}", hint="run `crimetag train`") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"cannot read {self.root / CURRENT}: {getattr(exc, 'strerror', None) or exc}") from None
        if not version:
            raise StoreError(f"{self.root / CURRENT} is empty")
        return version

    def versions(self) -> list[dict]:
        """Every stored version, oldest first: name, created, profile, macro-F1, current, readable."""
        try:
            names = sorted(p.name for p in self.versions_dir.iterdir() if p.is_dir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"cannot list {self.versions_dir}: {exc.strerror or exc}") from None
        try:
            current = self.current_version()
        except (ModelNotFound, StoreError):
            current = None
        out = []
        for name in names:
            row = {"version": name, "current": name == current}
            try:
                meta = self.read_metadata(name)
                row.update(created=meta.get("created"), profile=meta.get("profile"),
                           n_labels=len(meta.get("labels", [])),
                           macro_f1=(meta.get("metrics") or {}).get("macro_f1"), ok=True)
            except (IntegrityError, IncompatibleModel, ModelNotFound, StoreError) as exc:
                row.update(ok=False, problem=exc.message)
            out.append(row)
        return out

    def read_metadata(self, version: str, *, verify_model: bool = False) -> dict:
        """Read and check a version's metadata (format, signature; with verify_model, the digest)."""
        vdir = self._version_dir(version)
        try:
            raw = (vdir / META_FILE).read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"model {version} has no {META_FILE}; refusing to load it") from None
        except OSError as exc:
            raise StoreError(f"cannot read {vdir / META_FILE}: {exc.strerror or exc}") from None
        try:
            meta = json.loads(raw)
            if not isinstance(meta, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError):
            raise IntegrityError(f"{vdir / META_FILE} is corrupt (not a JSON object); refusing to load model {version}") from None
        if meta.get("format") != FORMAT_VERSION:
            raise IncompatibleModel(f"model {version} has format {meta.get('format')!r}; this crimetag reads format {FORMAT_VERSION}",
                                    hint="retrain with `crimetag train`")
        if self.signing_key:
            sig = meta.get("signature")
            if not isinstance(sig, str) or not hmac.compare_digest(sig, sign(meta, self.signing_key)):
                raise IntegrityError(f"model {version} is {'unsigned' if not sig else 'wrongly signed'} for CRIMETAG_SIGNING_KEY; refusing to load it")
        libraries = meta.get("libraries")
        built = libraries.get("scikit-learn", "?") if isinstance(libraries, dict) else "?"
        here = library_versions(only="scikit-learn")["scikit-learn"]
        if _minor(str(built)) != _minor(here):
            raise IncompatibleModel(
                f"model {version} was built with scikit-learn {built}; this installation has {here}",
                hint=f"retrain with `crimetag train`, or install scikit-learn=={built}")
        if verify_model:
            self._verify_digest(vdir, meta, version)
        return meta

    def _verify_digest(self, vdir: Path, meta: dict, version: str, keep: tuple = ()) -> dict:
        """Check every file of the version against the digest recorded when it was written.

        Returns the bytes of the files named in `keep`, read once for both the check and the use.
        """
        files = meta.get("files")
        if not isinstance(files, dict) or set(files) != set(MODEL_FILES) or files.get(MODEL_FILE) != meta.get("model_sha256"):
            raise IntegrityError(f"model {version}: {META_FILE} does not list the digests of {', '.join(MODEL_FILES)}; refusing to load it")
        kept = {}
        for name in MODEL_FILES:
            try:
                if name in keep:
                    kept[name] = (vdir / name).read_bytes()
                    actual = hashlib.sha256(kept[name]).hexdigest()
                else:
                    actual = sha256_file(vdir / name)
            except FileNotFoundError:
                raise IntegrityError(f"model {version} has no {name}; refusing to load it") from None
            except OSError as exc:
                raise StoreError(f"cannot read {vdir / name}: {exc.strerror or exc}") from None
            if not isinstance(files[name], str) or not hmac.compare_digest(actual, files[name]):
                raise IntegrityError(f"model {version}: {name} does not match its recorded SHA-256; refusing to load it")
        return kept

    def load(self, version: str | None = None, *, with_pipeline: bool = False) -> Tagger:
        """Load a version (default: current) after checking its digests, signature and libraries.

        Scoring needs only the arrays; `with_pipeline` also unpickles the scikit-learn pipeline
        (for tests that compare the two, and for users who want the estimator).
        """
        version = version or self.current_version()
        meta = self.read_metadata(version)
        vdir = self._version_dir(version)
        raw = self._verify_digest(vdir, meta, version, keep=(ARRAYS_FILE, SCORER_FILE))
        try:
            spec = json.loads(raw[SCORER_FILE])
            arrays = _unpack(raw[ARRAYS_FILE], spec["arrays"])
            index = {"tokens": spec["index_tokens"], **{name: arrays.pop(name) for name in INDEX_ARRAYS}}
            taxonomy = Taxonomy.from_records(spec["taxonomy"])
            embedding = spec.get("embedding")
            pipeline = None
            if with_pipeline:
                import joblib

                artifact = joblib.load(vdir / MODEL_FILE)
                if not isinstance(artifact, dict) or artifact.get("format") != FORMAT_VERSION:
                    raise ValueError("not a crimetag model")
                pipeline = artifact["pipeline"]
        except Exception as exc:  # digest-verified files should load; anything else is corruption
            raise IntegrityError(f"model {version} could not be read: {type(exc).__name__}") from None
        embedder = None
        if embedding:
            from .embeddings import load_embedder

            # Refuses an encoder whose files differ from the one this model was trained with.
            embedder = load_embedder(embedding.get("path"), expected=embedding["identity"])
        try:
            return Tagger(taxonomy=taxonomy, char_terms=spec["char_terms"],
                          version=version, metadata=meta, embedding=embedding, embedder=embedder,
                          pipeline=pipeline, index=index, **arrays)
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"model {version} is not a crimetag model ({type(exc).__name__})") from None

    def _version_dir(self, version: str) -> Path:
        if not version or "/" in version or version.startswith("."):
            raise ModelNotFound(f"no model version {version!r}")
        vdir = self.versions_dir / version
        if not vdir.is_dir():
            raise ModelNotFound(f"no model version {version!r} in {self.root}", hint="see `crimetag models`")
        return vdir
