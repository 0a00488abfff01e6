"""The task checks: a data set the core reads, evaluators that score an oracle 100%, and the data
set's :class:`~rrcore.contracts.protocols.PuzzleTask` (parse, decode, check, augment)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rrcore.contracts.metadata import DatasetMetadata
from rrcore.contracts.protocols import EvalContext, Puzzle
from rrcore.contracts.registry import Registry, get_registry
from rrcore.contracts.specs import Spec
from rrcore.data.format import IGNORE_LABEL, load_set
from rrcore.data.loader import PuzzleDataset


def check_task(
    plugin: str,
    config: Mapping[str, Any] | Any,
    tmp_path: Path,
    *,
    evaluators: Sequence[str | tuple[str, Mapping[str, Any]]] = (),
    registry: Registry | None = None,
    deterministic: bool = True,
    puzzles: Sequence[str] | None = None,
) -> Path:
    """Run every task check on the data set ``plugin`` with ``config`` (a dict of ``[data]``
    keys or a config instance), building into ``tmp_path``; returns the built folder.

    ``evaluators``: names (or ``(name, config dict)`` pairs) of evaluators to score an
    oracle and a wrong answer on the test split. ``deterministic``: also build a second
    time and compare (builders must be deterministic). ``puzzles`` goes to
    :func:`check_puzzle_task` when a PuzzleTask is registered under ``plugin``.
    """
    registry = registry or get_registry()
    spec = registry.get("dataset", plugin)
    if config is None or isinstance(config, Mapping):
        config = spec.make_config(**dict(config or {}))
    folder = check_dataset(plugin, spec, config, tmp_path / "cache")
    if deterministic:
        again = Path(spec.factory(config, tmp_path / "cache-again"))
        for split in ("train", "test"):
            difference = _folder_difference(folder / split, again / split)
            if difference:
                raise AssertionError(
                    f"task {plugin!r}: two builds with the same config differ in {split}/"
                    f"{difference}; the core expects a deterministic builder (seeded)"
                )
    for entry in evaluators:
        name, values = (entry, {}) if isinstance(entry, str) else entry
        check_evaluator(name, values, folder / "test", tmp_path / "eval" / name, registry=registry)
    if plugin in registry.components["task"]:
        check_puzzle_task(plugin, config, folder / "test", registry=registry, puzzles=puzzles)
    return folder


def _folder_difference(first: Path, second: Path) -> str | None:
    """The first file whose bytes differ between two split folders (or a missing one)."""
    names = sorted({p.name for p in first.iterdir()} | {p.name for p in second.iterdir()})
    for name in names:
        a, b = first / name, second / name
        if not (a.is_file() and b.is_file()) or a.read_bytes() != b.read_bytes():
            return name
    return None


def check_dataset(plugin: str, spec: Spec, config: Any, cache_dir: Path) -> Path:
    """The builder returns a folder whose ``train/`` and ``test/`` splits the core's reader
    loads, with tokens, labels and puzzle identifiers in range and something to learn."""

    def fail(problem: str, expected: str) -> AssertionError:
        return AssertionError(f"task {plugin!r}: {problem}; the core expects {expected}")

    folder = spec.factory(config, cache_dir)
    if not isinstance(folder, (str, Path)) or not Path(folder).is_dir():
        raise fail(f"the builder returned {folder!r}", "the Path of the built folder")
    folder = Path(folder)
    splits = {}
    for split in ("train", "test"):
        try:
            splits[split] = PuzzleDataset(folder / split, global_batch_size=4)
        except Exception as error:  # the reader's message names the file
            raise fail(
                f"the core's reader cannot load {split}/ ({type(error).__name__}: {error})",
                "the format of rrcore.data.format (write it with SplitWriter and write_split)",
            ) from None
    train_meta, test_meta = splits["train"].metadata, splits["test"].metadata
    for key in ("vocab_size", "seq_len", "pad_id", "ignore_label_id"):
        if getattr(train_meta, key) != getattr(test_meta, key):
            raise fail(
                f"{key} is {getattr(train_meta, key)} in train/ but {getattr(test_meta, key)} in test/",
                "one value: the model is sized from train/ and evaluated on test/",
            )
    for split, data in splits.items():
        if data.num_examples == 0:
            raise fail(f"{split}/ has no examples", "examples in both splits")
        for batch in _first_batches(data, split):
            if (batch["puzzle_identifiers"] >= train_meta.num_puzzle_identifiers).any():
                raise fail(
                    f"{split}/ has puzzle identifiers >= train's num_puzzle_identifiers "
                    f"({train_meta.num_puzzle_identifiers})",
                    "identifiers the model's embedding has",
                )
            if not (batch["labels"] != IGNORE_LABEL).any():
                raise fail(
                    f"a batch of {split}/ has no scored label (all equal ignore_label_id)",
                    "labels to learn from in every split",
                )
    return folder


def _first_batches(data: PuzzleDataset, split: str, count: int = 2) -> Iterator[dict[str, Tensor]]:
    stream = (batch for _, batch in data.train_batches()) if split == "train" else data.eval_batches()
    for _, batch in zip(range(count), stream):
        yield batch


def _padded_batch_size(examples: int) -> int:
    """A batch size that leaves the last evaluation batch padded."""
    return next(size for size in (7, 5, 3, 11, 13, 17, 19, 23, examples + 1) if examples % size)


def _score(evaluator: Any, data: PuzzleDataset, answer: Callable[[dict[str, Tensor]], Tensor], output_dir: Path) -> Any:
    """One evaluation pass, writing under ``output_dir``, where the model's predictions are
    ``answer(batch)``; padding rows get noise."""
    metadata = data.metadata
    generator = torch.Generator().manual_seed(0)
    evaluator.begin_eval(output_dir)
    for batch in data.eval_batches():
        preds = answer(batch)
        noise = torch.randint(0, metadata.vocab_size, preds.shape, generator=generator)
        preds = torch.where(batch["valid"][:, None], preds, noise)
        logits = torch.nn.functional.one_hot(preds, metadata.vocab_size).float()
        rows = preds.shape[0]
        evaluator.update_batch(
            batch,
            {
                "preds": preds,
                "logits": logits,
                "q_halt_logits": torch.full((rows,), 5.0),
                "q_continue_logits": torch.full((rows,), -5.0),
            },
        )
    return evaluator.result()


def check_evaluator(
    name: str, config: Mapping[str, Any] | Any, split: Path, output_dir: Path, *, registry: Registry | None = None
) -> dict[str, float]:
    """The evaluator ``name`` scores the labels themselves (the oracle) 1.0 on each headline
    metric, ignoring padding rows, and a wrong answer (every scored token changed) lower on
    each; one instance serves both passes (``begin_eval`` resets it). Returns the oracle's metrics."""

    def fail(problem: str, expected: str) -> AssertionError:
        return AssertionError(f"evaluator {name!r}: {problem}; the core expects {expected}")

    spec = (registry or get_registry()).get("evaluator", name)
    if config is None or isinstance(config, Mapping):
        config = spec.make_config(**dict(config or {}))
    probe = PuzzleDataset(split, global_batch_size=1)
    data = probe.rebatched(_padded_batch_size(probe.num_examples))
    metadata = data.metadata
    evaluator = spec.factory(config, EvalContext(metadata=metadata, data_dir=split))
    missing = set(getattr(evaluator, "required_outputs", set())) - {
        "preds",
        "logits",
        "q_halt_logits",
        "q_continue_logits",
    }
    if missing:
        raise fail(f"it requires outputs {sorted(missing)}", "only preds, logits, q_halt_logits, q_continue_logits")
    blank = metadata.ignore_label_id if metadata.ignore_label_id is not None else metadata.pad_id

    def oracle(batch: dict[str, Tensor]) -> Tensor:
        return torch.where(batch["labels"] == IGNORE_LABEL, blank, batch["labels"])

    def wrong(batch: dict[str, Tensor]) -> Tensor:
        labels = batch["labels"]
        return torch.where(labels == IGNORE_LABEL, blank, (labels + 1) % metadata.vocab_size)

    best = _score(evaluator, data, oracle, output_dir / "oracle")
    if not isinstance(best, dict) or not all(isinstance(v, (int, float)) for v in best.values()):
        raise fail(f"result() returned {best!r} on rank 0", "a dict of float metrics")
    headline = list(getattr(evaluator, "headline_metrics", ()) or [k for k in best if k.endswith("accuracy")])
    absent = [metric for metric in headline if metric not in best]
    if not headline or absent:
        raise fail(
            f"headline metrics {absent or headline} are not among its results {sorted(best)}",
            "headline_metrics naming metrics result() returns",
        )
    short = {metric: best[metric] for metric in headline if abs(best[metric] - 1.0) > 1e-9}
    if short:
        raise fail(
            f"the labels themselves score {short} (padding rows hold noise)",
            "1.0 for a perfect answer, with rows where batch['valid'] is False ignored",
        )
    worse = _score(evaluator, data, wrong, output_dir / "wrong")
    not_lower = {metric: worse[metric] for metric in headline if not worse[metric] < best[metric]}
    if not_lower:
        raise fail(
            f"an answer with every scored token wrong still scores {not_lower}",
            "a wrong answer to score below a perfect one (and begin_eval to reset the sums)",
        )
    return best


def check_puzzle_task(
    plugin: str,
    data_config: Any,
    split: Path,
    *,
    registry: Registry | None = None,
    count: int = 8,
    puzzles: Sequence[str] | None = None,
) -> None:
    """The :class:`~rrcore.contracts.protocols.PuzzleTask` registered for the data set ``plugin``, on the
    first ``count`` examples of ``split``: ``decode`` gives one line and ``render`` text for
    inputs and labels; ``check`` rejects an empty answer (every scored token the blank one),
    does not reject the label and does not accept a wrong answer (every scored token
    changed), where ``ok`` None says it cannot tell (an ARC task without its test output);
    ``invert`` undoes ``augment`` (copy 0 the puzzle itself).

    ``parse``: by default it must read back what ``decode`` writes of an input row (tasks
    whose puzzle and answer lines look alike, as Sudoku's); ``puzzles``, texts as a user
    writes them, for a task whose ``parse`` reads another form (a scramble, a task JSON):
    each must parse to ``seq_len`` tokens in the vocabulary."""

    def fail(problem: str, expected: str) -> AssertionError:
        return AssertionError(f"task {plugin!r} (PuzzleTask): {problem}; the core expects {expected}")

    spec = (registry or get_registry()).get("task", plugin)
    data = PuzzleDataset(split, global_batch_size=1)
    metadata = data.metadata
    task = spec.factory(data_config, metadata)
    arrays = load_set(split, metadata.sets[0])
    inputs, labels = np.asarray(arrays.inputs[:count]), np.asarray(arrays.labels[:count])
    for text in puzzles or ():
        _check_parse(task, text, metadata, fail)
    for row in range(len(inputs)):
        _check_decode(task, row, inputs[row], labels[row], fail, read_back=puzzles is None)
        _check_verdicts(task, row, inputs[row], labels[row], metadata, fail)
    if task.augmentations:
        _check_augment(task, inputs, metadata.seq_len, fail)


_Failure = Callable[[str, str], AssertionError]


def _parsed_tokens(task: Any, text: str) -> np.ndarray:
    parsed = task.parse(text)
    return np.asarray(parsed.inputs if isinstance(parsed, Puzzle) else parsed)


def _check_parse(task: Any, text: str, metadata: DatasetMetadata, fail: _Failure) -> None:
    """``text``, as a user writes a puzzle, parses to ``seq_len`` tokens in the vocabulary."""
    tokens = _parsed_tokens(task, text)
    if tokens.shape != (metadata.seq_len,) or not ((tokens >= 0) & (tokens < metadata.vocab_size)).all():
        raise fail(
            f"parse({text!r}) gave tokens of shape {tokens.shape} (range {tokens.min()}..{tokens.max()})",
            f"({metadata.seq_len},) tokens below vocab_size {metadata.vocab_size}",
        )


def _check_decode(
    task: Any, row: int, inputs: np.ndarray, labels: np.ndarray, fail: _Failure, *, read_back: bool
) -> None:
    """``decode`` gives one line and ``render`` text; with ``read_back``, ``parse`` reads the
    decoded input line back to the same tokens."""
    for name, tokens in (("inputs", inputs), ("labels", labels)):
        line, shown = task.decode(tokens), task.render(tokens)
        if not (isinstance(line, str) and "\n" not in line and isinstance(shown, str)):
            raise fail(
                f"decode of test {name} {row} gave {line!r}, render {type(shown).__name__}",
                "decode: one line (predictions.jsonl); render: text",
            )
    if read_back and not np.array_equal(_parsed_tokens(task, task.decode(inputs)), inputs):
        raise fail(
            f"parse(decode(inputs)) of test example {row} is not its inputs",
            "parse to read back the puzzle line decode writes (or puzzles= to give texts in the form parse reads)",
        )


def _check_verdicts(
    task: Any, row: int, inputs: np.ndarray, labels: np.ndarray, metadata: DatasetMetadata, fail: _Failure
) -> None:
    """``check`` does not reject the label, rejects an empty answer (every scored token the
    blank one) and does not accept a wrong one (every scored token changed)."""
    ignore = metadata.ignore_label_id
    blank = np.where(labels == ignore, labels, metadata.pad_id if ignore is None else ignore)
    wrong = np.where(labels == ignore, labels, (labels + 1) % metadata.vocab_size)
    verdict = task.check(inputs, labels)
    if verdict.ok is False:
        raise fail(
            f"check rejects the label of test example {row}: {verdict.message}",
            "check to accept a right answer (or say None: cannot tell)",
        )
    verdict = task.check(inputs, blank)
    if verdict.ok is not False:
        raise fail(
            f"check does not reject an empty answer to test example {row} ({verdict.message})", "check to reject it"
        )
    verdict = task.check(inputs, wrong)
    if verdict.ok:
        raise fail(
            f"check accepts a wrong answer to test example {row} ({verdict.message})",
            "check to reject it (or say None: cannot tell)",
        )


def _check_augment(task: Any, inputs: np.ndarray, seq_len: int, fail: _Failure) -> None:
    """``augment`` keeps the puzzle as copy 0 and ``invert`` maps every copy back."""
    copies, state = task.augment(inputs, 3, np.random.default_rng(0))
    if np.shape(copies) != (len(inputs), 3, seq_len) or not np.array_equal(copies[:, 0], inputs):
        raise fail(
            f"augment(inputs, 3, rng) gave shape {np.shape(copies)} or a first copy that is not the input",
            f"({len(inputs)}, 3, {seq_len}) with copy 0 the puzzle itself",
        )
    if not np.array_equal(task.invert(copies, state), np.repeat(inputs[:, None], 3, axis=1)):
        raise fail(
            "invert(augment(inputs)) does not give the inputs back",
            "invert to map each copy back to the original puzzle's frame",
        )


def dataset_digest(folder: str | Path) -> str:
    """A SHA-256 over every file of a built data set (names and contents), to pin a builder's
    output in a test: it changes when any byte of an array or of ``dataset.json`` does.
    ``build.json`` (the cache key, which holds input paths) is left out, and ``.npz`` files
    count by their arrays (zip members carry the time they were written)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != "build.json"):
        if path.name == "arc_build_summary.json":  # holds the build's duration
            continue
        digest.update(path.relative_to(folder).as_posix().encode())
        if path.suffix == ".npz":
            with np.load(path) as arrays:
                for name in sorted(arrays.files):
                    array = arrays[name]
                    digest.update(f"{name} {array.dtype} {array.shape}".encode())
                    digest.update(np.ascontiguousarray(array).tobytes())
        else:
            digest.update(path.read_bytes())
    return digest.hexdigest()
