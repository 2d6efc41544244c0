"""DingTalk's markdown subset, read the way the phone reads it: one parser for the renderer and the sandbox.

Rendered: headings `#`–`######`, block quotes `>`, `**bold**`, `*italic*`, `[links](http…)`,
`![images](http…)`, `- ` and `1. ` lists, paragraphs separated by a blank line.
Line breaks follow the phone, not CommonMark's renderers: inside a paragraph (or a quote, or a list
item's continuation) a single `\\n` joins the two lines; a line ending in two spaces breaks; a blank
line starts a new paragraph; headings and list items always start their own line
[message-types-and-data-format; blinkbean/dingtalk#2].
Everything else is shown as the raw text a phone shows: table pipes, code fences and `backticks`,
HTML tags (escaped, never rendered), and links or images whose URL is not http(s).

One module reads the subset for every purpose: `escape` makes untrusted text inert, `hard_breaks` is
what the renderer applies before measuring a message (so a line the author wrote on its own line is
on its own line on the phone), `to_plain` turns a line into the text message type's plain text, and
`to_html` is what the sandbox inbox shows.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

HEADING = re.compile(r" {0,3}(#{1,6})\s+(.*?)\s*$")
QUOTE = re.compile(r" {0,3}>\s?(.*)$")
BULLET = re.compile(r" {0,3}[-*+]\s+(.*)$")
NUMBERED = re.compile(r" {0,3}(\d{1,9})\.\s+(.*)$")
LINK = re.compile(r"(!?)\[([^\]\n]*)\]\(\s*([^)\s]+)\s*\)")
BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
ITALIC = re.compile(r"(?<![*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])")
HARD_BREAK = "  "  # two spaces before "\n": the break DingTalk's own example uses

# Rather than backslash-escaping (DingTalk documents no escape syntax), every character that could
# open markdown or HTML structure is swapped for its full-width look-alike: a value reads the same on
# a phone but can never become a heading, link, list, table or tag.
_FULL_WIDTH = str.maketrans(
    {
        "*": "＊",
        "_": "＿",
        "`": "｀",
        "[": "［",
        "]": "］",
        "#": "＃",
        ">": "＞",
        "<": "＜",
        "|": "｜",
        "~": "～",
        "\\": "＼",
        "&": "＆",
    }
)
_BREAKS = re.compile(r"[\s\x00-\x1f\x7f]+")
# Unicode's format characters (category Cf, Unicode 14): bidi overrides and isolates that make a phone
# show a row's own figures reversed, zero-width spaces and joiners, tags. Invisible by design, so data
# never needs them; tests/test_data_injection.py checks the list against unicodedata.
INVISIBLE = re.compile(
    "[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# A value at the start of a line could still open a list, a rule or a setext heading.
_LEADING_MARK = re.compile(r"^[-+=]+(?=\s|$)")
_LEADING_NUMBER = re.compile(r"^(\d+)([.)])(?=\s|$)")
_NEEDS_ESCAPE = re.compile(
    rf"[{re.escape(''.join(map(chr, _FULL_WIDTH)))}\s\x00-\x1f\x7f\ud800-\udfff]|^[-+=\d]|{INVISIBLE.pattern}"
)
_LEADING_SWAP = str.maketrans({"-": "－", "+": "＋", "=": "＝", ".": "．", ")": "）"})


def escape(text: str) -> str:
    """`text` made safe to drop anywhere in DingTalk markdown: one line, no structure it could open."""
    if not _NEEDS_ESCAPE.search(text):
        return str(text)  # most cells (names, figures, dates): one scan, nothing to change
    text = _SURROGATE.sub("\ufffd", _BREAKS.sub(" ", INVISIBLE.sub("", text)).strip()).translate(_FULL_WIDTH)
    text = _LEADING_MARK.sub(lambda m: m.group(0).translate(_LEADING_SWAP), text)
    return _LEADING_NUMBER.sub(lambda m: m.group(1) + m.group(2).translate(_LEADING_SWAP), text)


def to_plain(line: str) -> str:
    """One markdown line as plain text, for the text msgtype. Escaped data never matches."""
    line = line.strip()
    if heading := HEADING.match(line):
        line = heading.group(2)
    elif quote := QUOTE.match(line):
        line = quote.group(1).strip()
    if bullet := BULLET.match(line):
        line = "• " + bullet.group(1)
    line = LINK.sub(lambda m: m.group(2) if m.group(1) else f"{m.group(2)} {m.group(3)}", line)
    return ITALIC.sub(r"\1", BOLD.sub(r"\1", line))


def _is_item(line: str) -> bool:
    return bool(BULLET.match(line) or NUMBERED.match(line))


def starts_own_line(line: str, previous: str) -> bool:
    """Whether `line` starts a new line on the phone even with a single `\\n` before it."""
    if HEADING.match(previous) or HEADING.match(line) or _is_item(line):
        return True
    return bool(QUOTE.match(line)) and not QUOTE.match(previous)


def hard_breaks(text: str) -> str:
    """`text` with two spaces before each single `\\n` the phone would otherwise join.

    Only joins get the two bytes: list items, headings and blank-line gaps already break, so a long
    list costs nothing extra in the 2048-byte budget. Idempotent.
    """
    lines = text.split("\n")
    out = []
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        joined = following.strip() and line.strip() and not line.endswith(HARD_BREAK)
        if joined and not starts_own_line(following, line):
            line = line.rstrip() + HARD_BREAK
        out.append(line)
    return "\n".join(out)


@dataclass
class _Block:
    kind: str  # "p", "quote", "ul", "ol"
    lines: list[str] = field(default_factory=list)  # for lists: one entry per item, "\n"-joined
    start: int = 1


def to_html(text: str) -> str:
    """HTML for a DingTalk markdown text; safe to embed: every character of the input is escaped."""
    out: list[str] = []
    block: _Block | None = None
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        block = _feed(line, block, out)
    _flush(block, out)
    return "\n".join(out)


def _feed(line: str, block: _Block | None, out: list[str]) -> _Block | None:
    """Adds one line to the open block or starts another; returns the block now open."""
    if not line.strip():
        _flush(block, out)
        return None
    if heading := HEADING.match(line):
        _flush(block, out)
        level = len(heading.group(1))
        out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        return None
    for kind, pattern in (("quote", QUOTE), ("ul", BULLET), ("ol", NUMBERED)):
        if match := pattern.match(line):
            if block is None or block.kind != kind:
                _flush(block, out)
                start = int(match.group(1)) if kind == "ol" else 1
                block = _Block(kind, start=start)
            block.lines.append(match.group(match.lastindex or 1))
            return block
    if block is None:
        return _Block("p", [line.lstrip()])
    if block.kind in ("ul", "ol"):  # a lazy continuation line belongs to the last item
        block.lines[-1] = f"{block.lines[-1]}\n{line.lstrip()}"
    else:
        block.lines.append(line.lstrip())
    return block


def _flush(block: _Block | None, out: list[str]) -> None:
    if block is None:
        return
    if block.kind == "p":
        out.append(f"<p>{_lines(block.lines)}</p>")
    elif block.kind == "quote":
        out.append(f"<blockquote><p>{_lines(block.lines)}</p></blockquote>")
    else:
        items = "".join(f"<li>{_lines(item.split(chr(10)))}</li>" for item in block.lines)
        start = f' start="{block.start}"' if block.kind == "ol" and block.start != 1 else ""
        out.append(f"<{block.kind}{start}>{items}</{block.kind}>")


def _lines(lines: list[str]) -> str:
    """The lines of one block: `<br>` after a line ending in two spaces, else joined as the phone does."""
    parts = []
    for i, line in enumerate(lines):
        last = i == len(lines) - 1
        parts.append(inline(line.strip()) + ("" if last else "<br>\n" if line.endswith(HARD_BREAK) else " "))
    return "".join(parts)


def inline(text: str) -> str:
    """Links and images (http/https only), then bold and italic; the rest escaped."""
    parts: list[str] = []
    last = 0
    for match in LINK.finditer(text):
        parts.append(_emphasis(text[last : match.start()]))
        parts.append(_link(match))
        last = match.end()
    parts.append(_emphasis(text[last:]))
    return "".join(parts)


def _link(match: re.Match[str]) -> str:
    bang, label, url = match.groups()
    if not is_web_url(url):
        return _emphasis(match.group(0))
    href = html.escape(url, quote=True)
    if bang:
        return f'<img src="{href}" alt="{html.escape(label, quote=True)}" loading="lazy">'
    return f'<a href="{href}" rel="noopener noreferrer" target="_blank">{_emphasis(label)}</a>'


def _emphasis(text: str) -> str:
    escaped = html.escape(text, quote=True)
    escaped = BOLD.sub(r"<strong>\1</strong>", escaped)
    return ITALIC.sub(r"<em>\1</em>", escaped)


def is_web_url(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))
