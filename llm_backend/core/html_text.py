"""The text a reader of a web page sees: markup, scripts and styles left out, one line per block."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from html.parser import HTMLParser


class _TextExtractor(HTMLParser):
    BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def readable_html(markup: str) -> str:
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return html.unescape("\n".join(line for line in lines if line))


# Elements that never have children, and those the browser drops when HTML is set as an element's
# content (Label Studio shows a task's HTML inside its own <div>): they do not appear in XPaths.
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
                   "track", "wbr"})
_DROPPED = frozenset({"html", "head", "body"})
_HIDDEN = frozenset({"script", "style"})


@dataclass
class _Element:
    path: str
    tag: str
    counts: dict[str, int] = field(default_factory=dict)  # children seen by tag, "text()" for text nodes


@dataclass(frozen=True)
class TextNode:
    xpath: str  # as Label Studio writes it, relative to the HyperText's root: "/div[1]/p[2]/text()[1]"
    data: str
    start: int  # where it begins in the root's textContent (Label Studio's "globalOffsets")
    hidden: bool


class _Positions(HTMLParser):
    """The DOM's text nodes with their XPaths, as a browser builds them for simple HTML: tags closed in
    order, void elements, an implied <tbody>; not every repair of broken markup a browser makes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack = [_Element("", "")]
        self.nodes: list[TextNode] = []
        self.blocks: list[int] = []  # a text node index before which a block starts (a line break)
        self.length = 0

    def _child(self, tag: str) -> _Element:
        parent = self.stack[-1]
        parent.counts[tag] = parent.counts.get(tag, 0) + 1
        return _Element(f"{parent.path}/{tag}[{parent.counts[tag]}]", tag)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED:
            return
        if tag in _TextExtractor.BLOCKS:
            self.blocks.append(len(self.nodes))
        if tag == "tr" and self.stack[-1].tag == "table":
            self.stack.append(self._child("tbody"))
        element = self._child(tag)
        if tag not in _VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _TextExtractor.BLOCKS:
            self.blocks.append(len(self.nodes))
        if tag not in _DROPPED:
            self._child(tag)

    def handle_endtag(self, tag: str) -> None:
        tags = [element.tag for element in self.stack]
        if tag in tags[1:]:
            while self.stack[-1].tag != tag:
                self.stack.pop()
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        parent = self.stack[-1]
        parent.counts["text()"] = parent.counts.get("text()", 0) + 1
        hidden = any(element.tag in _HIDDEN for element in self.stack)
        self.nodes.append(TextNode(f"{parent.path}/text()[{parent.counts['text()']}]", data, self.length, hidden))
        self.length += len(data)


@dataclass(frozen=True)
class Place:
    """Where a span of the visible text lies in the page, in Label Studio's HyperText terms."""

    start: str
    start_offset: int
    end: str
    end_offset: int
    global_start: int
    global_end: int


class HtmlText:
    """The visible text of a page (exactly `readable_html`'s) with, for each of its characters, the text
    node and offset it came from, so a span of it can be placed in the page."""

    def __init__(self, markup: str) -> None:
        parser = _Positions()
        parser.feed(markup)
        parser.close()
        self.nodes = parser.nodes
        chars: list[tuple[str, tuple[int, int] | None]] = []
        blocks = set(parser.blocks)
        for index, node in enumerate(self.nodes):
            if index in blocks:
                chars.append(("\n", None))
            if not node.hidden:
                chars.extend((char, (index, offset)) for offset, char in enumerate(node.data))
        self.text, self._source = _normalised(chars)

    def place(self, start: int, end: int) -> Place | None:
        """The page position of visible text [start, end), or None when it cannot be placed."""
        if not 0 <= start < end <= len(self._source):
            return None
        first, last = self._source[start], self._source[end - 1]
        if first is None or last is None:
            return None
        (a, a_offset), (b, b_offset) = first, last
        return Place(self.nodes[a].xpath, a_offset, self.nodes[b].xpath, b_offset + 1,
                     self.nodes[a].start + a_offset, self.nodes[b].start + b_offset + 1)


def _normalised(chars: list[tuple[str, tuple[int, int] | None]]) -> tuple[str, list[tuple[int, int] | None]]:
    """`readable_html`'s whitespace rules (lines split as str.splitlines, words as str.split, empty lines
    dropped) applied to characters that remember their source; a joining space or line break takes
    the source of the first whitespace it replaces."""
    lines: list[list[tuple[str, tuple[int, int] | None]]] = [[]]
    for char, source in chars:
        if len(("x" + char + "x").splitlines()) > 1:
            lines.append([])
        else:
            lines[-1].append((char, source))
    out: list[tuple[str, tuple[int, int] | None]] = []
    for line in lines:
        words: list[list[tuple[str, tuple[int, int] | None]]] = []
        gap: tuple[int, int] | None = None
        current: list[tuple[str, tuple[int, int] | None]] = []
        gaps: list[tuple[int, int] | None] = []
        for char, source in line:
            if char.isspace():
                if current:
                    words.append(current)
                    current = []
                    gap = source
                    gaps.append(gap)
            else:
                current.append((char, source))
        if current:
            words.append(current)
        if not words:
            continue
        if out:
            out.append(("\n", None))
        for index, word in enumerate(words):
            if index:
                out.append((" ", gaps[index - 1]))
            out.extend(word)
    return "".join(char for char, _ in out), [source for _, source in out]
