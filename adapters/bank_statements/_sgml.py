"""A small tolerant tree builder for OFX bodies, both 1.x SGML and 2.x XML.

OFX 1.x leaves value elements unclosed (`<TRNAMT>-5.50<FITID>1`), and banks
send "2.x" files that do the same under an XML header, so one builder reads
both: an element followed by text is a value element and ends at the next tag;
an element without text is an aggregate and needs its closing tag. No DTD or
entity declarations are ever processed, so the XML entity attacks do not apply.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from .model import StatementError

_TOKEN = re.compile(
    r"<!\[CDATA\[(?P<cdata>.*?)\]\]>"
    r"|<!--.*?-->"
    r"|<[?!][^>]*>"
    r"|</(?P<close>[A-Za-z0-9._]+)\s*>"
    r"|<(?P<open>[A-Za-z0-9._]+)\s*/?>"
    r"|(?P<text>[^<]+)"
    r"|(?P<stray><)",
    re.DOTALL,
)


@dataclass(slots=True)
class Node:
    tag: str
    text: str | None = None
    children: list[Node] = field(default_factory=list)

    def find(self, path: str) -> Node | None:
        node: Node | None = self
        for step in path.split("/"):
            node = next((c for c in node.children if c.tag == step), None) if node else None
        return node

    def value(self, path: str) -> str | None:
        """Stripped text of a value element; empty means absent."""
        node = self.find(path)
        return node.text if node is not None and node.text else None

    def iter(self, tag: str) -> Iterator[Node]:
        for child in self.children:
            if child.tag == tag:
                yield child
            yield from child.iter(tag)


def build_tree(body: str) -> Node:
    """Tree of the first <OFX> element in `body`; tags are upper-cased."""
    root = Node("#document")
    stack = [root]
    for token in _TOKEN.finditer(body):
        kind = token.lastgroup
        if kind == "open":
            _close_value(stack)
            node = Node(token.group("open").upper())
            stack[-1].children.append(node)
            stack.append(node)
            if token.group(0).endswith("/>"):
                stack.pop()
        elif kind in ("text", "cdata"):
            text = token.group(kind)
            text = html.unescape(text) if kind == "text" else text
            if text.strip() and len(stack) > 1:
                top = stack[-1]
                top.text = (top.text or "") + text.strip()
        elif kind == "close":
            _close(stack, token.group("close").upper())
        elif kind == "stray":
            raise StatementError(
                "malformed_ofx", "the OFX body has a '<' that does not start a tag."
            )
    _close_value(stack)
    if len(stack) > 1:
        raise StatementError(
            "truncated_file",
            f"the OFX file ends inside <{stack[-1].tag}>; it was probably cut off while "
            "downloading. Download it again.",
        )
    ofx = next((n for n in root.children if n.tag == "OFX"), None)
    if ofx is None:
        raise StatementError("malformed_ofx", "the file has no <OFX> element.")
    return ofx


def _close_value(stack: list[Node]) -> None:
    # An element holding text is a value element: the next tag ends it.
    if len(stack) > 1 and stack[-1].text is not None and not stack[-1].children:
        stack.pop()


def _close(stack: list[Node], tag: str) -> None:
    for depth in range(len(stack) - 1, 0, -1):
        if stack[depth].tag == tag:
            # Elements opened inside and never closed were empty value
            # elements (`<NAME><MEMO>x`): hand what they swallowed back to
            # their parent, innermost first.
            for index in range(len(stack) - 1, depth, -1):
                node, parent = stack[index], stack[index - 1]
                if node.text is None and node.children:
                    at = parent.children.index(node) + 1
                    parent.children[at:at] = node.children
                    node.children = []
            del stack[depth:]
            return
    raise StatementError("malformed_ofx", f"the OFX file closes </{tag}> which was never opened.")
