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

from .model import MAX_DEPTH, StatementError

_TAG = re.compile(r"(?P<close>/)?(?P<name>[A-Za-z0-9._]+)\s*(?P<empty>/)?")


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


def _tokens(body: str) -> Iterator[tuple[str, str]]:
    """(kind, value) pairs: text, cdata, open, empty (`<X/>`) and close.

    Each step searches forward from where the last one ended and never goes
    back, so a file is read in linear time whatever it holds; an unterminated
    CDATA section or comment ends the file with an error, not a rescan.
    """
    pos, end = 0, len(body)
    while pos < end:
        lt = body.find("<", pos)
        if lt < 0:
            yield "text", body[pos:]
            return
        if lt > pos:
            yield "text", body[pos:lt]
        for opener, closer, kind in (("<![CDATA[", "]]>", "cdata"), ("<!--", "-->", "")):
            if body.startswith(opener, lt):
                stop = body.find(closer, lt + len(opener))
                if stop < 0:
                    raise StatementError(
                        "truncated_file",
                        f"the OFX file ends inside an unterminated {opener} section; it was "
                        "probably cut off while downloading. Download it again.",
                    )
                if kind:
                    yield kind, body[lt + len(opener) : stop]
                pos = stop + len(closer)
                break
        else:
            gt = body.find(">", lt + 1)
            tag = _TAG.fullmatch(body, lt + 1, gt) if gt > 0 else None
            if body.startswith(("<?", "<!"), lt) and gt > 0:
                pos = gt + 1  # processing instructions and declarations say nothing
                continue
            if tag is None:
                raise StatementError(
                    "malformed_ofx", "the OFX body has a '<' that does not start a tag."
                )
            name = tag.group("name").upper()
            yield (
                ("close" if tag.group("close") else "empty" if tag.group("empty") else "open"),
                name,
            )
            pos = gt + 1


def build_tree(body: str) -> Node:
    """Tree of the first <OFX> element in `body`; tags are upper-cased."""
    root = Node("#document")
    stack = [root]
    for kind, value in _tokens(body):
        if kind in ("open", "empty"):
            _close_value(stack)
            node = Node(value)
            stack[-1].children.append(node)
            if kind == "open":
                stack.append(node)
                if len(stack) > MAX_DEPTH:
                    raise StatementError(
                        "too_deeply_nested",
                        f"the OFX elements nest deeper than {MAX_DEPTH} levels (a statement "
                        "nests about 10); the file is damaged or not a statement.",
                    )
        elif kind in ("text", "cdata"):
            text = html.unescape(value) if kind == "text" else value
            if text.strip() and len(stack) > 1:
                top = stack[-1]
                top.text = (top.text or "") + text.strip()
        else:
            _close(stack, value)
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
                # An open element is its parent's last child (everything
                # since it opened went inside it), so its content is appended.
                if node.text is None and node.children:
                    parent.children.extend(node.children)
                    node.children = []
            del stack[depth:]
            return
    raise StatementError("malformed_ofx", f"the OFX file closes </{tag}> which was never opened.")
