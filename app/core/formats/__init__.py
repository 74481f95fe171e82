"""Dataset codecs: COCO / LVIS JSON (polygons, RLE, results), folders of PNG masks, and the polygon and RLE
helpers they share. Each reader returns a ``Dataset`` and an ``ImportReport``; each writer takes a
project's records and writes atomically. ``app.services.formats`` lists them by name for both front ends."""
