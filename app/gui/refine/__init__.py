"""Refinement in the window: the refine thread and its self-contained frames, the controller that turns
frames into previews and undo steps, and the refine panel."""
