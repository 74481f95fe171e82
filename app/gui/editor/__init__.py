"""The editor: the open image as a document with undo commands, the canvas that shows and edits it, its
tools, overlays and the refine preview."""
