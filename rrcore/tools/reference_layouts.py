"""How the reference HRM, TRM and URM name their tensors and config keys, mapped onto rr's.

rr's HRM, TRM and URM compute what the references compute, so a checkpoint maps onto them
tensor for tensor (:data:`LAYOUTS`, :func:`map_weights`) and the config key for key
(:func:`model_keys`, :func:`act_keys`).
"""

from __future__ import annotations

import re
from typing import Any

import attrs
import torch
from torch import nn

from rrcore.contracts.errors import ConfigError

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
