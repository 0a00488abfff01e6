"""rr plugin: the Universal Reasoning Model (URM) and the Muon optimizer."""

from rr_urm.muon import MuonConfig, MuonWithAdamW
from rr_urm.urm import URM, ConvSwiGLU, URMConfig

__all__ = ["URM", "ConvSwiGLU", "URMConfig", "MuonConfig", "MuonWithAdamW"]
