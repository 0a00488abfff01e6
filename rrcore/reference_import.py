"""``rr import``: a reference repository's checkpoint as an rr export folder.

The HRM (sapientinc/HRM), TRM (SamsungSAILMontreal/TinyRecursiveModels) and URM
(zitian-gao/URM, UbiquantAI/URM) trainers save ``torch.save(model.state_dict())`` of their
loss head: every name starts with ``model.inner.`` (``_orig_mod.model.inner.`` when the
model was compiled), and URM wraps the dict as ``{"step", "model_state_dict", ...}``.
Beside the checkpoints they write ``all_config.yaml`` (URM: ``config.yaml``), whose
``arch`` table holds the model's keys. rr's HRM, TRM and URM compute what the references
compute, so a checkpoint maps onto them tensor for tensor (:data:`LAYOUTS`) and the
config key for key (:func:`model_keys`); :func:`import_reference` writes the result in
the layout of :mod:`rrcore.export`, which ``rr eval``, ``rr solve`` and ``[train]
init_from`` read.

The checkpoint is read with ``torch.load(weights_only=True)`` (or safetensors): nothing in
it is unpickled beyond tensors and plain values, so a file that carries code is refused
without running it. A missing, extra or differently shaped tensor is a
:class:`~rrcore.config.ConfigError` naming it as the checkpoint spells it.
"""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from rrcore.checkpoint import CheckpointError, refused_global
from rrcore.config import ConfigError

# ---------------------------------------------------------------------------------------
# Tensor names: the reference's (below ``model.inner.``) and rr's
# ---------------------------------------------------------------------------------------

REFERENCE_PREFIX = "model.inner."
"""What every tensor name of a reference checkpoint starts with (its loss head's ``model``,
the ACT wrapper's ``inner``), after torch.compile's ``_orig_mod.``."""

COMPILE_PREFIX = "_orig_mod."

_ATTENTION = (
    ("self_attn.qkv_proj.weight", "mixer.qkv_proj.weight"),
    ("self_attn.o_proj.weight", "mixer.o_proj.weight"),
)
_SWIGLU = (("mlp.gate_up_proj.weight", "mlp.gate_up_proj.weight"), ("mlp.down_proj.weight", "mlp.down_proj.weight"))


def _input_and_heads(input_name: str) -> tuple[tuple[str, str], ...]:
    return (
        ("embed_tokens.embedding_weight", f"{input_name}.embed_tokens.weight"),
        ("embed_pos.embedding_weight", f"{input_name}.embed_pos.weight"),
        ("puzzle_emb.weights", f"{input_name}.puzzle_emb.weights"),
        ("lm_head.weight", "heads.lm_head.weight"),
        ("q_head.weight", "heads.q_head.weight"),
        ("q_head.bias", "heads.q_head.bias"),
    )


def _layers(reference: str, rr: str, pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((f"{reference}.{{n}}.{a}", f"{rr}.{{n}}.{b}") for a, b in pairs)


@attrs.frozen
class Layout:
    """How one reference model's tensors are named in rr's model ``plugin``.

    ``names`` pairs a reference name (below ``model.inner.``) with rr's state-dict name;
    ``{n}`` stands for a layer index. ``rotary`` names the reference's rotary tables, which
    rr computes from the config instead of storing (the references do not save them
    either: they are non-persistent buffers); when a checkpoint holds them they are
    compared with rr's.
    """

    plugin: str
    input_name: str
    names: tuple[tuple[str, str], ...]

    @property
    def rotary(self) -> tuple[tuple[str, str], ...]:
        return (
            ("rotary_emb.cos_cached", f"{self.input_name}.rotary_emb.cos"),
            ("rotary_emb.sin_cached", f"{self.input_name}.rotary_emb.sin"),
        )

    def _convert(self, name: str, source: int) -> str | None:
        for pair in (*self.names, *self.rotary):
            pattern = re.escape(pair[source]).replace(re.escape("{n}"), r"(\d+)")
            match = re.fullmatch(pattern, name)
            if match:
                return pair[1 - source].replace("{n}", match.group(1)) if match.groups() else pair[1 - source]
        return None

    def to_rr(self, reference_name: str) -> str | None:
        """rr's name of the reference tensor ``reference_name`` (below ``model.inner.``), or None."""
        return self._convert(reference_name, 0)

    def to_reference(self, rr_name: str) -> str | None:
        """The full reference name (``model.inner.…``) of rr's tensor ``rr_name``, or None."""
        name = self._convert(rr_name, 1)
        return REFERENCE_PREFIX + name if name is not None else None


LAYOUTS: dict[str, Layout] = {
    # models/hrm/hrm_act_v1.py: two stacks of attention blocks, H_level and L_level.
    "hrm": Layout(
        "hrm",
        "embed_input",
        (
            *_input_and_heads("embed_input"),
            ("H_init", "H_init"),
            ("L_init", "L_init"),
            *_layers("H_level.layers", "H_level.blocks", _ATTENTION + _SWIGLU),
            *_layers("L_level.layers", "L_level.blocks", _ATTENTION + _SWIGLU),
        ),
    ),
    # models/recursive_reasoning/trm.py: one stack, L_level, of attention or mlp_t blocks.
    "trm": Layout(
        "trm",
        "embed",
        (
            *_input_and_heads("embed"),
            ("H_init", "H_init"),
            ("L_init", "L_init"),
            *_layers("L_level.layers", "net.blocks", _ATTENTION + _SWIGLU),
            *_layers(
                "L_level.layers",
                "net.blocks",
                (
                    ("mlp_t.gate_up_proj.weight", "mixer.mlp.gate_up_proj.weight"),
                    ("mlp_t.down_proj.weight", "mixer.mlp.down_proj.weight"),
                ),
            ),
        ),
    ),
    # models/urm/urm.py: one shared stack of attention + ConvSwiGLU blocks.
    "urm": Layout(
        "urm",
        "embed_input",
        (
            *_input_and_heads("embed_input"),
            ("init_hidden", "init_hidden"),
            *_layers(
                "layers",
                "blocks",
                _ATTENTION + _SWIGLU + (("mlp.dwconv.weight", "mlp.conv_weight"), ("mlp.dwconv.bias", "mlp.conv_bias")),
            ),
        ),
    ),
}

# The reference model classes (arch.name is "module@Class") and the rr plugin of each.
REFERENCE_CLASSES = {
    "HierarchicalReasoningModel_ACTV1": "hrm",  # sapientinc/HRM; TRM's and URM's copies
    "TinyRecursiveReasoningModel_ACTV1": "trm",  # SamsungSAILMontreal/TinyRecursiveModels
    "TRM": "trm",  # zitian-gao/URM's copy of TRM
    "URM": "urm",  # zitian-gao/URM, UbiquantAI/URM
}

CONFIG_NAMES = ("all_config.yaml", "config.yaml", ".hydra/config.yaml")
"""Where the references write their config, relative to the checkpoint's folder."""


# ---------------------------------------------------------------------------------------
# Reading the checkpoint and its config
# ---------------------------------------------------------------------------------------


def find_checkpoint(path: Path) -> Path:
    """``path`` itself, or for a folder its latest ``step_N`` (``step_N.pt``) file."""
    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder; expected a reference checkpoint (step_N)")
    if path.is_file():
        return path
    steps = [(int(m.group(1)), p) for p in path.iterdir() if (m := re.fullmatch(r"step_(\d+)(\.pt)?", p.name))]
    if not steps:
        raise ConfigError(f"{path}: a folder without step_N checkpoint files; name the checkpoint file")
    return max(steps)[1]


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], int]:
    """The tensors of a reference checkpoint (names as saved) and its step (0 when unknown).

    ``.safetensors`` is read by safetensors, anything else by ``torch.load(weights_only=True)``:
    a file holding code (any global beyond tensors and plain values) is refused, unrun.
    """
    step = int(m.group(1)) if (m := re.fullmatch(r"step_(\d+)(\.\w+)?", path.name)) else 0
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu"), step
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(f"{path}: cannot be read as safetensors ({error})") from None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused: it holds what torch.load(weights_only=True) does not unpickle ({refused_global(error)}); "
            f"a reference checkpoint holds tensors only, so this file is not one or was altered (nothing in it was run)"
        ) from None
    except Exception as error:  # not a torch file, truncated
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(f"{path}: cannot be read ({type(error).__name__}: {first})") from None
    if isinstance(saved, dict) and isinstance(saved.get("model_state_dict"), dict):  # URM's checkpoints
        if isinstance(saved.get("step"), int):
            step = saved["step"]
        saved = saved["model_state_dict"]
    if not isinstance(saved, dict) or not saved or not all(isinstance(t, torch.Tensor) for t in saved.values()):
        raise ConfigError(f"{path}: not a state dict of tensors (what the reference trainers save)")
    return saved, step


def strip_prefixes(names: list[str], where: str) -> dict[str, str]:
    """Each saved name to its name below ``model.inner.``: torch.compile's ``_orig_mod.``
    removed wherever it wraps a module; a name outside ``model.inner.`` is an error."""
    stripped = {}
    for name in names:
        short = ".".join(part for part in name.split(".") if part != COMPILE_PREFIX[:-1])
        if not short.startswith(REFERENCE_PREFIX):
            raise ConfigError(
                f"{where}: holds tensor {name!r}, outside {REFERENCE_PREFIX!r} (a reference HRM, TRM or URM "
                f"checkpoint names every tensor model.inner.*, or _orig_mod.model.inner.* when compiled)"
            )
        short = short.removeprefix(REFERENCE_PREFIX)
        if short in stripped:
            raise ConfigError(
                f"{where}: holds tensor {REFERENCE_PREFIX + short!r} twice ({stripped[short]!r}, {name!r})"
            )
        stripped[short] = name
    return stripped


def find_config(checkpoint: Path, given: str | None) -> Path | None:
    """``given``, else the reference's config file beside ``checkpoint`` (:data:`CONFIG_NAMES`)."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise ConfigError(f"--config {given}: no such file")
        return path
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    return next((folder / name for name in CONFIG_NAMES if (folder / name).is_file()), None)


def read_config(path: Path) -> dict[str, Any]:
    """The reference config's ``arch`` table (``${.key}`` references resolved) and its data
    path under ``data_path``; a bare arch file (``config/arch/trm.yaml``) is its own arch."""
    try:
        import yaml
    except ImportError:
        raise ConfigError(f"{path}: reading a reference config needs PyYAML (pip install pyyaml)") from None
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{path}: cannot be read as YAML ({first})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a table of keys (the reference's all_config.yaml)")
    arch = raw.get("arch", raw)
    if not isinstance(arch, dict) or "name" not in arch:
        raise ConfigError(f"{path}: no arch.name (expected the reference's all_config.yaml or a config/arch file)")
    resolved = {}
    for key, value in arch.items():
        if isinstance(value, str) and (m := re.fullmatch(r"\$\{\.(\w+)\}", value.strip())):
            value = arch.get(m.group(1), value)
        resolved[key] = value
    data = raw.get("data_path") or (raw.get("data_paths") or [None])[0]
    return {"arch": resolved, "data_path": data}


# ---------------------------------------------------------------------------------------
# Config: the reference's arch keys to rr's [model], [act] and [loss]
# ---------------------------------------------------------------------------------------


def plugin_of(arch: dict[str, Any] | None, names: list[str], where: str) -> str:
    """The rr model plugin: from ``arch.name``'s class, else from the tensor names."""
    if arch is not None:
        reference_class = str(arch["name"]).rsplit("@", 1)[-1]
        if reference_class not in REFERENCE_CLASSES:
            known = ", ".join(sorted(REFERENCE_CLASSES))
            raise ConfigError(f"{where}: arch.name = {arch['name']!r}: rr imports the reference classes {known}")
        return REFERENCE_CLASSES[reference_class]
    if any(name.startswith("H_level.") for name in names):
        return "hrm"
    if any(name.startswith("layers.") for name in names):
        return "urm"
    if any(name.startswith("L_level.") for name in names):
        return "trm"
    raise ConfigError(f"{where}: no H_level, L_level or layers tensors: not an HRM, TRM or URM checkpoint")


def _count(names: list[str], prefix: str) -> int:
    indices = {int(m.group(1)) for name in names if (m := re.match(re.escape(prefix) + r"(\d+)\.", name))}
    return max(indices) + 1 if indices else 0


def model_keys(plugin: str, arch: dict[str, Any] | None, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """rr's ``[model]`` keys for a reference model: the sizes the tensors show, under the
    ``arch`` table's keys where there is one. Keys rr has and the references do not
    (``mlp_t_norm``, ``gated_norm``, ``conv_kernel``, ...) take the value that computes what
    the reference computes."""
    names = list(tensors)
    keys: dict[str, Any] = {}
    embedding = tensors.get("embed_tokens.embedding_weight")
    if embedding is not None and embedding.ndim == 2:
        keys["hidden_size"] = int(embedding.shape[1])
    puzzle = tensors.get("puzzle_emb.weights")
    keys["puzzle_emb_ndim"] = int(puzzle.shape[1]) if puzzle is not None and puzzle.ndim == 2 else 0
    keys["pos_encodings"] = "learned" if "embed_pos.embedding_weight" in tensors else "rope"
    if plugin == "hrm":
        keys.update(H_layers=_count(names, "H_level.layers."), L_layers=_count(names, "L_level.layers."))
        keys["puzzle_emb_len"] = 0  # ceil(puzzle_emb_ndim / hidden_size), as the reference
    elif plugin == "trm":
        keys.update(L_layers=_count(names, "L_level.layers."), mlp_t=any(".mlp_t." in name for name in names))
        keys.update(puzzle_emb_len=16, mlp_t_norm="positions", gated_norm=False)  # the reference's
        if keys["mlp_t"] and keys["pos_encodings"] == "rope":
            keys["pos_encodings"] = "none"
    else:
        keys.update(num_layers=_count(names, "layers."), puzzle_emb_len=0)
        conv = tensors.get("layers.0.mlp.dwconv.weight")
        keys["conv_kernel"] = int(conv.shape[-1]) if conv is not None and conv.ndim == 3 else 2
    if arch is not None:
        shared = ("hidden_size", "num_heads", "expansion", "puzzle_emb_ndim", "rms_norm_eps", "rope_theta")
        own = {
            "hrm": ("H_cycles", "L_cycles", "H_layers", "L_layers"),
            "trm": ("H_cycles", "L_cycles", "L_layers", "mlp_t", "puzzle_emb_len"),
            "urm": ("H_cycles", "L_cycles", "num_layers"),
        }[plugin]
        keys.update({key: arch[key] for key in (*shared, *own) if key in arch})
        if "expansion" in keys:
            keys["expansion"] = float(keys["expansion"])
        if plugin == "hrm" and arch.get("mlp_t"):
            raise ConfigError(
                "reference config: arch.mlp_t = true: rr's HRM has attention blocks only (TRM's repository's HRM variant)"
            )
        if "pos_encodings" in arch and plugin != "urm":  # URM's reference always uses rope
            keys["pos_encodings"] = arch["pos_encodings"] if arch["pos_encodings"] in ("rope", "learned") else "none"
    return keys


def act_keys(plugin: str, arch: dict[str, Any] | None) -> dict[str, Any]:
    """rr's ``[act]`` keys: URM's ``loops`` is ``halt_max_steps`` (its exploration is a fixed
    0.1); HRM halts on q_halt > q_continue, TRM and URM on q_halt > 0."""
    keys: dict[str, Any] = {"q_continue": plugin == "hrm"}
    if arch is not None:
        steps = arch.get("loops") if plugin == "urm" else arch.get("halt_max_steps")
        if steps is not None:
            keys["halt_max_steps"] = steps
        keys["halt_exploration_prob"] = 0.1 if plugin == "urm" else arch.get("halt_exploration_prob", 0.1)
    return keys


# ---------------------------------------------------------------------------------------
# The data set's shape
# ---------------------------------------------------------------------------------------


def read_metadata(data_dir: Path) -> Any:
    """The ``train/dataset.json`` of a built data set (the reference builders' layout)."""
    from rrcore.data import DatasetMetadata

    path = data_dir / "train" / "dataset.json"
    if not path.is_file():
        raise ConfigError(f"{data_dir}: no train/dataset.json; expected a data set folder built by the reference")
    return DatasetMetadata.from_json(path)


def metadata_from_tensors(tensors: dict[str, torch.Tensor], prefix: int, seq_len: int | None, where: str) -> Any:
    """The data set's shape as the checkpoint shows it: vocabulary (token embedding rows),
    puzzle identifiers (puzzle-embedding rows), sequence length (``seq_len``, else the
    positions of mlp_t or learned positions less the ``prefix``); pad, ignored
    label and blank identifier 0, as every reference builder writes them."""
    from rrcore.data import DatasetMetadata

    embedding = tensors.get("embed_tokens.embedding_weight")
    if embedding is None or embedding.ndim != 2:
        raise ConfigError(f"{where}: tensor {REFERENCE_PREFIX}embed_tokens.embedding_weight is missing")
    puzzle = tensors.get("puzzle_emb.weights")
    if seq_len is None:
        positions = tensors.get("embed_pos.embedding_weight")
        mlp_t = tensors.get("L_level.layers.0.mlp_t.gate_up_proj.weight")
        if positions is not None:
            seq_len = int(positions.shape[0]) - prefix
        elif mlp_t is not None:
            seq_len = int(mlp_t.shape[1]) - prefix
        else:
            raise ConfigError(
                f"{where}: the sequence length is not in the checkpoint (rotary positions): give --data, the "
                f"data set folder the reference trained on, or --seq-len N"
            )
    identifiers = int(puzzle.shape[0]) if puzzle is not None else 1
    return DatasetMetadata(
        pad_id=0,
        ignore_label_id=0,
        blank_identifier_id=0,
        vocab_size=int(embedding.shape[0]),
        seq_len=seq_len,
        num_puzzle_identifiers=identifiers,
        total_groups=identifiers,
        mean_puzzle_examples=1.0,
        sets=["all"],
    )


# ---------------------------------------------------------------------------------------
# Mapping the weights onto the model
# ---------------------------------------------------------------------------------------


def map_weights(
    model: nn.Module, layout: Layout, tensors: dict[str, torch.Tensor], saved_names: dict[str, str], where: str
) -> dict[str, torch.Tensor]:
    """``model``'s state dict filled from the reference ``tensors`` (names below
    ``model.inner.``), each cast to rr's dtype. A tensor without an rr name, one the model
    lacks, one the model needs that is absent, or one of another shape is a
    :class:`ConfigError` naming it as ``saved_names`` spells it."""
    expected = model.state_dict()
    buffers = dict(model.named_buffers())
    state: dict[str, torch.Tensor] = {}
    rotary = {reference for reference, _ in layout.rotary}
    for name, tensor in tensors.items():
        saved = saved_names.get(name, REFERENCE_PREFIX + name)
        target = layout.to_rr(name)
        present = expected if name not in rotary else buffers
        if target is None or target not in present:
            raise ConfigError(
                f"{where}: holds tensor {saved!r}, which a {layout.plugin.upper()} of this config does not have; "
                f"check the reference config's sizes (or --set model.KEY=VALUE)"
            )
        want = present[target]
        if tuple(tensor.shape) != tuple(want.shape):
            raise ConfigError(
                f"{where}: tensor {saved!r} has shape {tuple(tensor.shape)}, {tuple(want.shape)} in a "
                f"{layout.plugin.upper()} of this config (rr's {target!r}); check the config's sizes and the data "
                f"set's vocabulary, sequence length and puzzle identifiers"
            )
        if name in rotary:
            if not torch.allclose(tensor.float(), want.float(), atol=1e-4):
                raise ConfigError(
                    f"{where}: tensor {saved!r} differs from the rotary table rr computes from hidden_size, "
                    f"num_heads and rope_theta; check those keys"
                )
            continue
        state[target] = tensor.detach().to(want.dtype)
    for target in expected:
        if target not in state:
            reference = layout.to_reference(target) or target
            raise ConfigError(
                f"{where}: tensor {reference!r} is missing (rr's {target!r}); the checkpoint is of another model "
                f"or config (check the reference config's keys)"
            )
    return state


# ---------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------


def build_experiment(
    plugin: str,
    model: dict[str, Any],
    act: dict[str, Any],
    arch: dict[str, Any] | None,
    experiment_path: str | None,
    data_dir: str | None,
    name: str,
    overrides: list[str],
    registry: Any,
) -> Any:
    """The export's experiment: ``experiment_path``'s (its [data] task is what ``rr solve``
    reads puzzles with), else one training on the reference's data folder (``built``), with
    the reference's [model] in place of its own, its [act] and loss type, then ``overrides``."""
    from rrcore.config import apply_override, load_raw, merge, parse_override, resolve

    if experiment_path:
        raw = load_raw(experiment_path)
    elif data_dir:
        raw = {"data": {"plugin": "built", "path": str(data_dir)}}
    else:
        raise ConfigError(
            "no data set for the import: give --experiment EXP.toml (an rr experiment on the same data, whose "
            "task rr solve uses) or --data DIR (the data set folder the reference trained on)"
        )
    raw["model"] = {"plugin": plugin, **model}
    raw["act"] = merge(raw.get("act", {}), act)
    if arch is not None and isinstance(arch.get("loss"), dict) and "loss_type" in arch["loss"]:
        loss = raw.get("loss", {"plugin": "act"})
        if loss.get("plugin", "act") == "act":
            raw["loss"] = {**loss, "plugin": "act", "loss_type": arch["loss"]["loss_type"]}
    raw["run"] = {**raw.get("run", {}), "name": name}
    for override in overrides:
        keys, value = parse_override(override)
        apply_override(raw, keys, value)
    return resolve(raw, registry, experiment_path or "rr import")


@attrs.frozen
class ReferenceCheckpoint:
    """A reference checkpoint as read: its file, step, tensors (names below ``model.inner.``),
    the names as saved, its config file (or None) and that config's ``arch`` and data path."""

    path: Path
    step: int
    tensors: dict[str, torch.Tensor]
    saved_names: dict[str, str]
    config_path: Path | None
    arch: dict[str, Any] | None
    data_path: str | None

    def export_fields(self) -> dict[str, Any]:
        """What the import's ``export.json`` says of its source (:func:`rrcore.export.export_info`)."""
        return {
            "weights": "imported",
            "step": self.step,
            "source": str(self.path.resolve()),
            "reference_config": str(self.config_path.resolve()) if self.config_path is not None else None,
        }


def read_reference(checkpoint: str | Path, config: str | None = None) -> ReferenceCheckpoint:
    """Read ``checkpoint`` (a file, or a folder's latest ``step_N``) and its config
    (``config``, else :data:`CONFIG_NAMES` beside it)."""
    path = find_checkpoint(Path(checkpoint))
    saved, step = read_checkpoint(path)
    saved_names = strip_prefixes(list(saved), str(path))
    config_path = find_config(Path(checkpoint), config)
    reference = read_config(config_path) if config_path is not None else {"arch": None, "data_path": None}
    return ReferenceCheckpoint(
        path=path,
        step=step,
        tensors={short: saved[full] for short, full in saved_names.items()},
        saved_names=saved_names,
        config_path=config_path,
        arch=reference["arch"],
        data_path=reference["data_path"],
    )


def import_reference(
    checkpoint: str | Path,
    directory: str | Path,
    *,
    config: str | None = None,
    experiment: str | None = None,
    data: str | None = None,
    seq_len: int | None = None,
    overrides: list[str] = (),
    registry: Any = None,
) -> dict[str, Any]:
    """Write the reference checkpoint ``checkpoint`` (a file, or a folder's latest
    ``step_N``) to ``directory`` as an rr export folder and return its ``export.json``.

    ``config``: the reference's config (default: :data:`CONFIG_NAMES` beside the
    checkpoint; without one the sizes come from the tensors, the rest from rr's defaults
    and ``overrides``). ``experiment``: an rr experiment whose other sections (data, task,
    evaluators, loss) the export keeps. ``data``: the data set folder the reference trained
    on, whose ``train/dataset.json`` gives the vocabulary, sequence length and puzzle
    identifiers (default: the config's ``data_path`` when it exists here; else the
    checkpoint's shapes and ``seq_len``).
    """
    from rrcore.export import check_destination, export_info, unique_tensors, write_export
    from rrcore.protocols import ModelContext
    from rrcore.registry import get_registry
    from rrcore.run import build

    directory = Path(directory)
    check_destination(directory)
    registry = registry or get_registry()
    reference = read_reference(checkpoint, config)
    where = str(reference.path)
    plugin = plugin_of(reference.arch, list(reference.tensors), str(reference.config_path or where))
    if data is None and reference.data_path and (Path(reference.data_path) / "train" / "dataset.json").is_file():
        data = reference.data_path
    model_config = model_keys(plugin, reference.arch, reference.tensors)
    act = act_keys(plugin, reference.arch)
    data_dir = data or reference.data_path
    resolved = build_experiment(
        plugin, model_config, act, reference.arch, experiment, data_dir, directory.name, list(overrides), registry
    )
    if resolved.model.plugin != plugin:
        raise ConfigError(f"--set model.plugin: the checkpoint is a {plugin.upper()}; it imports into {plugin!r} only")
    if data:
        metadata = read_metadata(Path(data))
    else:
        metadata = metadata_from_tensors(reference.tensors, prefix_positions(resolved.model.config), seq_len, where)
    if seq_len is not None:
        metadata.seq_len = seq_len
    model = build(registry.get("model", plugin), resolved.model.config, ModelContext(metadata, 1, torch.float32))
    model.load_state_dict(map_weights(model, LAYOUTS[plugin], reference.tensors, reference.saved_names, where))
    tensors = unique_tensors(model.state_dict())
    info = export_info(model, tensors, resolved, **reference.export_fields())
    write_export(directory, tensors, resolved, metadata, info)
    return info


def prefix_positions(config: Any) -> int:
    """Puzzle-prefix positions of a model config (``puzzle_emb_len``, 0 = derived)."""
    return config.puzzle_emb_len or math.ceil(config.puzzle_emb_ndim / config.hidden_size)
