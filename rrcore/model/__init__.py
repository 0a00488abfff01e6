"""What every architecture shares: building blocks (``layers``), the puzzle input and output heads
(``puzzle_io``), losses, the model kit a model subclasses, the carry between ACT steps and a
step's output (``carry``), ACT halting (``act``), its loss head (``act_loss``), the compiled step
(``compiled_step``), recorded states and metric reductions.

May import: rrcore, rrcore.base, rrcore.contracts, rrcore.data.
"""
