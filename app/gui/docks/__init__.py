"""The main window's dock panels: image list, instance list, refine panel, properties."""
