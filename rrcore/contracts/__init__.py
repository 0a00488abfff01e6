"""What the core and plugins agree on: the hooks (``hookspecs``), what a plugin registers
(``specs``: descriptors and ``build``) and how it is found (``registry``), the protocols a
component implements (``protocols``, ``views``), a data set's metadata (``metadata``), the
typed experiment (``experiment``), reading and writing experiment files (``config``,
``structure``, ``tomlfile``), what made a run (``provenance``) and the errors rr reports in
one line (``errors``).

May import: rrcore, rrcore.base.
"""
