"""Parse a COCO-style JSON document and keep, per annotation, the exact text of its polygon list.

``json.loads`` gives values, not where they were; an exporter that wants to write an unedited polygon back
would have to format every coordinate again, which for an LVIS-sized file (17 million coordinates) costs
more than parsing the file did, and can change how a number is spelt (``1.50`` comes back as ``1.5``).
Here the record list is walked one element at a time with the standard library's own C scanner (the
same one ``json.loads`` uses, so values are identical), and each record's ``"segmentation"`` text is cut
out of the document.

The text is only cut where it is unambiguous: the record's text holds the token ``"segmentation"`` exactly
once and no backslash (so that token is the record's own key, not an escaped key or a string elsewhere),
and the value starts with ``[``. It ends at the first ``]`` followed (after whitespace) by another ``]``,
which is the end of a list of number lists; the caller uses the text only after checking that the parsed
value is exactly that. Anything unusual in the document's layout falls back to plain ``json.loads`` and
no texts, so the result is never different from ``json.loads``'s.
"""
from __future__ import annotations

import json
import re
from bisect import bisect_left
from json.decoder import scanstring
from typing import Any

_SCAN = json.JSONDecoder().scan_once  # (value, end) of the JSON value starting at an index
_WS = re.compile(r"[ \t\n\r]*")
_CLOSE = re.compile(r"\][ \t\n\r]*\]")
_KEY = '"segmentation"'
_KEY_LEN = len(_KEY)
_WS_CHARS = frozenset(" \t\n\r")


class _Layout(Exception):
    """The document is not laid out as the walker expects (``json.loads`` then decides what it is)."""


def loads_keeping_polygon_text(text: str, list_key: str | None) -> tuple[Any, list[str | None] | None]:
    """``json.loads(text)``, plus the polygon text of each record of ``data[list_key]`` (of the top-level
    list when ``list_key`` is None): a string where one was cut, else None; the second item is None when
    the walker fell back to ``json.loads``."""
    try:
        return _Walker(text).document(list_key)
    except (_Layout, ValueError, IndexError, StopIteration, RecursionError):
        return json.loads(text), None


class _Walker:
    def __init__(self, text: str) -> None:
        self.text = text
        self.backslashes = [m.start() for m in re.finditer(r"\\", text)]

    def skip(self, i: int) -> int:
        return _WS.match(self.text, i).end()  # type: ignore[union-attr]

    def document(self, list_key: str | None) -> tuple[Any, list[str | None] | None]:
        i = self.skip(0)
        if list_key is None:
            data, texts, i = self.records(i)
        else:
            data, texts, i = self.top_object(i, list_key)
        if self.skip(i) != len(self.text):
            raise _Layout
        return data, texts

    def top_object(self, i: int, list_key: str) -> tuple[dict[str, Any], list[str | None] | None, int]:
        text = self.text
        if text[i] != "{":
            raise _Layout
        data: dict[str, Any] = {}
        texts: list[str | None] | None = None
        i = self.skip(i + 1)
        if text[i] == "}":
            return data, texts, i + 1
        while True:
            if text[i] != '"':
                raise _Layout
            key, i = scanstring(text, i + 1)
            i = self.skip(i)
            if text[i] != ":":
                raise _Layout
            i = self.skip(i + 1)
            if key == list_key:
                texts = None  # a repeated key: the last one wins, as in json.loads
                if text[i] == "[":
                    value, texts, i = self.records(i)
                else:
                    value, i = _SCAN(text, i)
            else:
                value, i = _SCAN(text, i)
            data[key] = value
            i = self.skip(i)
            if text[i] == "}":
                return data, texts, i + 1
            if text[i] != ",":
                raise _Layout
            i = self.skip(i + 1)

    def records(self, i: int) -> tuple[list[Any], list[str | None], int]:
        text, scan, skip, polygon_text = self.text, _SCAN, self.skip, self.polygon_text
        if text[i] != "[":
            raise _Layout
        values: list[Any] = []
        texts: list[str | None] = []
        i = skip(i + 1)
        if text[i] == "]":
            return values, texts, i + 1
        while True:  # the whitespace tests spare a regex call in the usual compact layouts
            start = i
            value, i = scan(text, i)
            values.append(value)
            texts.append(polygon_text(start, i, value))
            if text[i] in _WS_CHARS:
                i = skip(i)
            if text[i] == "]":
                return values, texts, i + 1
            if text[i] != ",":
                raise _Layout
            i += 2 if text[i + 1] == " " else 1  # json.dumps' ", "
            if text[i] in _WS_CHARS:
                i = skip(i)

    def polygon_text(self, start: int, end: int, record: Any) -> str | None:
        """The record's polygon list text, when unambiguous. Only the value's first item is checked to be a
        list here; the caller uses the text only for a list of coordinate lists it has checked."""
        polygons = record.get("segmentation") if type(record) is dict else None
        if type(polygons) is not list or not polygons or type(polygons[0]) is not list:
            return None
        text = self.text
        key = text.find(_KEY, start, end)
        if key < 0 or text.find(_KEY, key + _KEY_LEN, end) >= 0:
            return None
        if self.backslashes and self.has_backslash(start, end):
            return None
        i = key + _KEY_LEN
        if text[i] != ":":
            i = self.skip(i)
            if text[i] != ":":
                return None
        i += 2 if text[i + 1] == " " else 1  # json.dumps' ": "
        if text[i] != "[":
            i = self.skip(i)
            if text[i] != "[":
                return None
        close = _CLOSE.search(text, i, end)
        return None if close is None else text[i : close.end()]

    def has_backslash(self, start: int, end: int) -> bool:
        k = bisect_left(self.backslashes, start)
        return k < len(self.backslashes) and self.backslashes[k] < end
