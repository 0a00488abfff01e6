"""rr-trm: TRM, ToTRM and a transformer baseline for rr (see :mod:`rr_trm.trm`)."""
