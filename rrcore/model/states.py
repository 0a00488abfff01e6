"""Recording a model's named recurrent states at every cycle, for ``rr analyze``.

The contract is :class:`rrcore.contracts.protocols.RecordsStates`; :class:`StateRecorder`
implements it for a model module. A model mixes it in and, in its forward pass::

    record = self.new_state_record()          # None unless recording: one Python branch
    ...
    z_L = self.L_level(z_L, z_H + x, rotary)
    record_state(record, "z_L", z_L)          # a no-op when record is None

The flag is a plain Python bool, so the normal (and ``torch.compile``\\ d) path is
unchanged when recording is off. Run the plain module, in eval mode, to record.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor

StateRecord = dict[str, list[Tensor]]
"""One forward call's (ACT step's) states: name -> detached copies after every update, in order."""


def record_state(record: StateRecord | None, name: str, state: Tensor) -> None:
    """Append a detached copy of ``state`` under ``name`` when recording (``record`` not None)."""
    if record is not None:
        record.setdefault(name, []).append(state.detach().clone())


class StateRecorder:
    """Mixin for model modules: ``recording_states()`` (:class:`rrcore.contracts.protocols.RecordsStates`)."""

    record_states: bool = False
    recorded_states: list[StateRecord] | None = None

    def new_state_record(self) -> StateRecord | None:
        """A record for this forward call while recording, else None."""
        if not self.record_states:
            return None
        record: StateRecord = {}
        self.recorded_states.append(record)
        return record

    @contextmanager
    def recording_states(self) -> Iterator[list[StateRecord]]:
        """Record every named state after each update while the block runs.

        Yields a list that receives one :data:`StateRecord` per forward call. Outputs
        are unchanged. Recording is Python-side: run the plain module, not a
        ``torch.compile`` of it.
        """
        records: list[StateRecord] = []
        previous = self.record_states, self.recorded_states
        self.record_states, self.recorded_states = True, records
        try:
            yield records
        finally:
            self.record_states, self.recorded_states = previous
