"""What Telegram can show of an agent's message: Markdown as Telegram's HTML, split at its
length limit (counted in UTF-16 units, as Telegram counts) on paragraph, line or word
boundaries with code blocks closed and reopened across parts, and reactions mapped onto the
fixed set Telegram allows."""

from __future__ import annotations

import html
import re

from telegram.constants import ReactionEmoji

MAX_TEXT_UNITS = 4096


# Common emoji outside Telegram's list, mapped to the allowed one closest in meaning.
_REACTION_ALIASES = {
    "✅": "👍",
    "✔": "👍",
    "☑": "👍",
    "🆗": "👌",
    "♥": "❤",
    "💖": "❤",
    "💕": "❤",
    "😂": "🤣",
    "😀": "😁",
    "😃": "😁",
    "😄": "😁",
    "🙂": "😁",
    "😊": "🥰",
    "❌": "👎",
    "✖": "👎",
    "🚀": "🔥",
    "⭐": "🤩",
    "🌟": "🤩",
    "✨": "🎉",
    "🥳": "🎉",
    "🎊": "🎉",
    "🙌": "👏",
    "💪": "💯",
    "😮": "😱",
    "😲": "😱",
    "😕": "🤔",
    "🧐": "🤨",
    "😠": "😡",
    "😞": "😢",
    "😔": "😢",
    "💡": "⚡",
    "👁": "👀",
    "📝": "✍",
}
# Variation selectors and skin tones, which Telegram's list never carries.
_EMOJI_MODIFIERS = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")
# Telegram's own spelling of each allowed reaction (some carry a variation selector), by the
# emoji without modifiers.
_REACTIONS = {_EMOJI_MODIFIERS.sub("", str(emoji.value)): str(emoji.value) for emoji in ReactionEmoji}


def reaction_for(emoji: str) -> str | None:
    """The reaction Telegram allows for `emoji`: itself, a close one, or None (no reaction)."""
    plain = _EMOJI_MODIFIERS.sub("", emoji.strip())
    return _REACTIONS.get(_REACTION_ALIASES.get(plain, plain))


# -- Markdown -> Telegram HTML ----------------------------------------------------------------


def escape_markdown(text: str) -> str:
    """`text` with everything `markdown_to_html` would read as markup escaped."""
    return re.sub(r"([\\`*_~\[\]()#>+\-|!])", r"\\\1", text)


_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)")
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
_QUOTE = re.compile(r"^ {0,3}> ?(.*)$")
_RULE = re.compile(r"^ {0,3}([-*_])(?: *\1){2,} *$")
_BULLET = re.compile(r"^(\s*)[-*+] (?=\S)")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_TICKS = re.compile("`+")
_LINK = re.compile(r"\[([^\[\]\n]+)\]\(\s*([^()\s]+)\s*\)")
_LINK_SCHEMES = ("http://", "https://", "tg://", "mailto:")
_ESCAPABLE = frozenset("\\`*_~[]()#>+-=|{}.!<&")
_TAGS = {"**": "b", "__": "b", "*": "i", "_": "i", "~~": "s"}


def markdown_to_html(text: str) -> str:
    """Telegram HTML for the Markdown an agent writes. Anything it does not know stays as
    it was, escaped; tags always nest properly."""
    lines = text.split("\n")
    out: list[str] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append(_inline("\n".join(para)))
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _fence_of(line)
        if fence is not None:
            flush()
            marker, lang = fence
            body: list[str] = []
            i += 1
            while i < len(lines) and not _closes(lines[i], marker):
                body.append(lines[i])
                i += 1
            i += 1  # the closing fence, or past the end of an unclosed block
            code = html.escape("\n".join(body), quote=False)
            lang_attr = html.escape(lang, quote=True)
            out.append(f'<pre><code class="language-{lang_attr}">{code}</code></pre>' if lang else f"<pre>{code}</pre>")
            continue
        if _TABLE_ROW.match(line) and i + 1 < len(lines) and _TABLE_ROW.match(lines[i + 1]):
            # A table only lines up in a fixed-width font.
            flush()
            rows: list[str] = []
            while i < len(lines) and _TABLE_ROW.match(lines[i]):
                rows.append(lines[i].strip())
                i += 1
            out.append(f"<pre>{html.escape(chr(10).join(rows), quote=False)}</pre>")
            continue
        if (heading := _HEADING.match(line)) is not None:
            flush()
            out.append(f"<b>{_inline(heading.group(1))}</b>")
        elif _RULE.match(line):
            flush()
            out.append("──────────")
        elif _QUOTE.match(line):
            flush()
            quoted: list[str] = []
            while i < len(lines) and (inner := _QUOTE.match(lines[i])) is not None:
                quoted.append(inner.group(1))
                i += 1
            out.append(f"<blockquote>{_inline(chr(10).join(quoted))}</blockquote>")
            continue
        else:
            para.append(_BULLET.sub(r"\1• ", line))
        i += 1
    flush()
    return "\n".join(out)


def _fence_of(line: str) -> tuple[str, str] | None:
    """The (marker, language) of a line opening a code fence."""
    match = _FENCE_OPEN.match(line)
    if match is None:
        return None
    marker = match.group(1)
    # "```x```" on one line is inline code, not a fence (CommonMark: no backtick after it).
    if marker[0] == "`" and "`" in line[match.end(1) :]:
        return None
    return marker, match.group(2)


def _closes(line: str, marker: str) -> bool:
    stripped = line.strip()
    indent = len(line) - len(line.lstrip(" "))
    return indent <= 3 and len(stripped) >= len(marker) and set(stripped) == {marker[0]}


def _inline(text: str) -> str:
    out: list[str] = []
    # Open emphasis: its marker and where its placeholder sits in `out`.
    stack: list[tuple[str, int]] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n and text[i + 1] in _ESCAPABLE:
            out.append(html.escape(text[i + 1], quote=False))
            i += 2
            continue
        if char == "`":
            ticks = _TICKS.match(text, i)
            assert ticks is not None
            run = ticks.end() - i
            closing = next((m for m in _TICKS.finditer(text, ticks.end()) if m.end() - m.start() == run), None)
            if closing is None:
                out.append(ticks.group())
                i += run
                continue
            end = closing.start()
            code = text[i + run : end]
            if len(code) > 2 and code[0] == code[-1] == " ":
                code = code[1:-1]
            out.append(f"<code>{html.escape(code, quote=False)}</code>")
            i = end + run
            continue
        if char == "[" and (link := _LINK.match(text, i)) is not None:
            label, url = link.group(1), link.group(2)
            if url.lower().startswith(_LINK_SCHEMES):
                out.append(f'<a href="{html.escape(url, quote=True)}">{_inline(label)}</a>')
            else:
                out.append(html.escape(f"{label} ({url})", quote=False))
            i = link.end()
            continue
        marker = _marker_at(text, i, stack)
        if marker is None:
            out.append(html.escape(char, quote=False))
            i += 1
            continue
        before = text[i - 1] if i > 0 else " "
        after = text[i + len(marker)] if i + len(marker) < n else " "
        intraword_ok = marker[0] != "_"  # snake_case_names stay as they are
        can_open = not after.isspace() and (intraword_ok or not before.isalnum())
        can_close = not before.isspace() and (intraword_ok or not after.isalnum())
        opened = [index for index, (open_marker, _) in enumerate(stack) if open_marker == marker]
        if can_close and opened and stack[opened[-1]][1] < len(out) - 1:
            # Openers above the one this closes stay literal: tags must nest.
            del stack[opened[-1] + 1 :]
            _, at = stack.pop()
            tag = _TAGS[marker]
            out[at] = f"<{tag}>"
            out.append(f"</{tag}>")
        else:
            if can_open:
                stack.append((marker, len(out)))
            out.append(html.escape(marker, quote=False))
        i += len(marker)
    return "".join(out)


def _marker_at(text: str, i: int, stack: list[tuple[str, int]]) -> str | None:
    char = text[i]
    if char == "~":
        return "~~" if text.startswith("~~", i) else None
    if char not in "*_":
        return None
    # In a run like "***", close a single marker first when one is open on top.
    if stack and stack[-1][0] == char:
        return char
    return char * 2 if text.startswith(char * 2, i) else char


# -- splitting ---------------------------------------------------------------------------------


def units(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def truncate(text: str, limit: int) -> str:
    if units(text) <= limit:
        return text
    return text[: _fitting(text, limit - 1)] + "…"


def _fitting(text: str, limit: int) -> int:
    """The most characters of `text` that fit in `limit` UTF-16 units."""
    count = min(len(text), limit)
    while (excess := units(text[:count]) - limit) > 0:
        count -= max(1, (excess + 1) // 2)
    return count


_FENCE_MARK = re.compile(r"^ {0,3}(`{3,}|~{3,})", re.MULTILINE)


def split_text(text: str, limit: int = MAX_TEXT_UNITS) -> list[str]:
    """`text` in pieces of at most `limit` UTF-16 units, cut at the last paragraph break
    that fits, else the last line break, else the last space, else anywhere. A code fence
    open at a cut is closed there and reopened in the next piece."""
    rest = text.strip("\n")
    if units(rest) <= limit:
        return [rest] if rest.strip() else []
    fences = [match.group(1) for match in _FENCE_MARK.finditer(rest)]
    # Room for closing a fence at the end of a piece and reopening it (with its language).
    reserve = 2 * (max((len(fence) for fence in fences), default=0) + 1) + 32 if fences else 0
    budget = max(1, limit - reserve)
    pieces: list[str] = []
    while units(rest) > budget:
        window = rest[: _fitting(rest, budget)]
        cut, separator = _cut_in(window)
        if cut > 0:
            pieces.append(window[:cut].rstrip())
            rest = rest[cut + len(separator) :].lstrip("\n")
        else:
            pieces.append(window)
            rest = rest[len(window) :]
    if rest.strip():
        pieces.append(rest)
    pieces = [piece for piece in pieces if piece.strip()]
    return _balance_fences(pieces) if fences else pieces


def _cut_in(window: str) -> tuple[int, str]:
    """Where to end a piece in `window`: the last paragraph break, line break or space, the
    first kind that leaves the piece at least half full (a paragraph break near the start
    would make a tiny piece); else the latest of any; (0, "") when there is none."""
    found = [(window.rfind(separator), separator) for separator in ("\n\n", "\n", " ")]
    for cut, separator in found:
        if cut >= len(window) // 2:
            return cut, separator
    cut, separator = max(found, key=lambda item: item[0])
    return (cut, separator) if cut > 0 else (0, "")


def _balance_fences(pieces: list[str]) -> list[str]:
    balanced: list[str] = []
    reopen = ""
    for piece in pieces:
        text = reopen + piece
        opening = _open_fence(text)
        if opening is None:
            reopen = ""
        else:
            marker, lang = opening
            text = f"{text}\n{marker}"
            reopen = f"{marker}{lang[:24]}\n"
        balanced.append(text)
    return balanced


def _open_fence(text: str) -> tuple[str, str] | None:
    """The fence (marker, language) still open at the end of `text`, if any."""
    open_marker: tuple[str, str] | None = None
    for line in text.split("\n"):
        if open_marker is None:
            open_marker = _fence_of(line)
        elif _closes(line, open_marker[0]):
            open_marker = None
    return open_marker
