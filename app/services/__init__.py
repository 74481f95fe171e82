"""The jobs both front ends run, written once: import, export, stats and validate a dataset; select, refine
and save instances of a project; the demo; training defaults.

Qt-free, and torch is imported only inside the functions that refine, so the window and the command line
import this package freely. The window (app/gui) and the command line (app/cli) call these services and
never each other.
"""
