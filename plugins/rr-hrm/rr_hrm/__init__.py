"""rr-hrm: the Hierarchical Reasoning Model (Wang et al., 2025, arXiv 2506.21734) for rr."""

from rr_hrm.hrm import HRM, HRMConfig

__all__ = ["HRM", "HRMConfig"]
