"""Built data sets: the on-disk format (``format``), writing a split (``writer``), reading it in
batches (``loader``), the build cache (``cache``, ``stamps``) and grid symmetries (``grids``).

May import: rrcore, rrcore.base, rrcore.contracts.
"""
