"""The agent's hands in its workspace: Anthropic's schema-less bash and text editor tools.

Both are Anthropic-defined tool types: the model already knows their input schemas, so the
definitions carry only `type` and `name`, and the name is fixed by the type.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any, TypeGuard

from container_runner.tools.base import Tool, ToolError, ToolOutcome

BASH_TOOL_TYPE = "bash_20250124"
TEXT_EDITOR_TOOL_TYPE = "text_editor_20250728"

# Once the command is killed, how long to wait for the pipe to drain. Only a process that
# left our process group (setsid) can still hold it open, and we do not wait for that one.
_DRAIN_AFTER_KILL_S = 2.0
_READ_CHUNK = 65_536
# UTF-8 continuation bytes: removing them from a chunk leaves one byte per character.
_UTF8_CONTINUATION = bytes(range(0x80, 0xC0))
_NEWLINE = "\n"


def workspace_tools(workspace: Path) -> list[Tool]:
    """The bash and text editor tools, both rooted in `workspace`."""
    return [BashTool(workspace), TextEditorTool(workspace)]


# --- bash -----------------------------------------------------------------------------------


class BashTool:
    """Runs a command with `bash -c` in the workspace; stdout and stderr come back combined.

    Each command runs in a fresh shell: no variables, `cd` or functions carry over between
    calls, so `restart` has nothing to reset and only says so. The command gets its own
    process group, and on timeout the whole group is killed, background jobs included.
    A background job that keeps the output pipe open counts as still running, so long-lived
    jobs must redirect their output (`nohup server > server.log 2>&1 &`).
    """

    name = "bash"

    def __init__(self, workspace: Path, timeout_s: float = 120, output_cap: int = 30_000) -> None:
        self._workspace = workspace
        self._timeout_s = timeout_s
        self._output_cap = output_cap

    def definition(self) -> dict[str, Any]:
        return {"type": BASH_TOOL_TYPE, "name": self.name}

    def run(self, arguments: dict[str, Any]) -> ToolOutcome:
        if arguments.get("restart") is True:
            return ToolOutcome("shell restarted (every command already runs in a fresh shell)")
        command = arguments.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ToolError("`command` is required: the bash command to run")
        return self._execute(command)

    def _execute(self, command: str) -> ToolOutcome:
        process = self._spawn(command)
        assert process.stdout is not None  # stdout=PIPE guarantees it
        collector = _OutputCollector(keep_bytes=4 * self._output_cap)  # UTF-8: at most 4 bytes a character
        reader = threading.Thread(target=collector.drain, args=(process.stdout,), daemon=True)
        reader.start()
        if not _finish_within(process, reader, self._timeout_s):
            _kill_group(process)
            reader.join(_DRAIN_AFTER_KILL_S)
            output = collector.text(self._output_cap)
            message = f"command timed out after {self._timeout_s:g} s and was killed; output so far:\n{output}"
            return ToolOutcome(message, is_error=True)
        return _exit_outcome(process.returncode, collector.text(self._output_cap))

    def _spawn(self, command: str) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(
                ["bash", "-c", command],
                cwd=self._workspace,
                stdin=subprocess.DEVNULL,  # a command waiting for input would otherwise hang until the timeout
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so a timeout can kill every descendant
            )
        except OSError as exc:
            raise ToolError(f"could not start bash: {exc}") from exc


def _finish_within(process: subprocess.Popen[bytes], reader: threading.Thread, timeout_s: float) -> bool:
    """Whether the shell exited and every holder of its output pipe closed it in time."""
    deadline = time.monotonic() + timeout_s
    reader.join(timeout_s)
    if reader.is_alive():
        return False
    try:
        process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return False
    return True


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # everything in the group already exited
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _exit_outcome(returncode: int, output: str) -> ToolOutcome:
    if returncode == 0:
        return ToolOutcome(output or "(no output)")
    status = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    return ToolOutcome(f"{output}\n[{status}]" if output else f"[{status}]", is_error=True)


class _OutputCollector:
    """Keeps the start and the end of a stream and counts what falls in between, so a
    command printing gigabytes costs bounded memory."""

    def __init__(self, keep_bytes: int) -> None:
        self._keep = keep_bytes
        self._head = bytearray()
        self._tail = bytearray()
        self._dropped_chars = 0
        self._lock = threading.Lock()

    def drain(self, stream: IO[bytes]) -> None:
        try:
            while chunk := os.read(stream.fileno(), _READ_CHUNK):
                self._add(chunk)
        finally:
            stream.close()

    def _add(self, chunk: bytes) -> None:
        with self._lock:
            room = self._keep - len(self._head)
            self._head += chunk[:room]
            self._tail += chunk[room:] if room > 0 else chunk
            overflow = len(self._tail) - self._keep
            if overflow > 0:
                self._dropped_chars += len(bytes(self._tail[:overflow]).translate(None, _UTF8_CONTINUATION))
                del self._tail[:overflow]

    def text(self, cap: int) -> str:
        with self._lock:
            head = self._head.decode("utf-8", errors="replace")
            tail = self._tail.decode("utf-8", errors="replace")
            dropped = self._dropped_chars
        return _cut_middle(head, tail, dropped, cap)


def _cut_middle(head: str, tail: str, dropped: int, cap: int) -> str:
    """Keep the first and last `cap / 2` characters: errors tend to be at the end, and the
    start says what was running."""
    text = head + tail
    if dropped == 0 and len(text) <= cap:
        return text
    keep_start = cap // 2
    keep_end = cap - keep_start
    left_out = len(text) - cap + dropped
    end = text[len(text) - keep_end :] if keep_end else ""
    return f"{text[:keep_start]}\n[... {left_out} characters left out ...]\n{end}"


# --- text editor ----------------------------------------------------------------------------


class TextEditorTool:
    """View, create and edit UTF-8 text files inside the workspace.

    Relative paths are taken from the workspace; absolute paths must lie inside it, and a
    path whose real location (after symlinks) is outside is refused.
    """

    name = "str_replace_based_edit_tool"
    _COMMANDS = ("view", "create", "str_replace", "insert")  # undo_edit left text_editor_20250728
    _DIRECTORY_DEPTH = 2
    _DIRECTORY_ENTRIES = 1_000

    def __init__(self, workspace: Path, max_file_bytes: int = 2_000_000, view_cap: int = 30_000) -> None:
        self._root = workspace.resolve()
        self._max_file_bytes = max_file_bytes
        # What one view shows at most, in characters (as bash's output cap): a file of up to
        # `max_file_bytes` can be edited whole, but it is read a window at a time.
        self._view_cap = view_cap

    def definition(self) -> dict[str, Any]:
        return {"type": TEXT_EDITOR_TOOL_TYPE, "name": self.name}

    def run(self, arguments: dict[str, Any]) -> ToolOutcome:
        command = arguments.get("command")
        if command not in self._COMMANDS:
            raise ToolError(f"unknown command {command!r}; use one of: {', '.join(self._COMMANDS)}")
        raw = _required_str(arguments, "path")
        path = self._resolve(raw)
        if command == "view":
            return self._view(path, raw, arguments.get("view_range"))
        if command == "create":
            return self._create(path, raw, _required_str(arguments, "file_text"))
        if command == "str_replace":
            old_str = _required_str(arguments, "old_str")
            return self._str_replace(path, raw, old_str, _optional_str(arguments, "new_str", ""))
        return self._insert(path, raw, _required_int(arguments, "insert_line"), _insert_text(arguments))

    def _resolve(self, raw: str) -> Path:
        candidate = Path(raw)
        if not candidate.is_absolute():
            candidate = self._root / candidate
        # resolve() follows every symlink, dangling ones too, so the check sees where a
        # write would really land.
        real = candidate.resolve()
        if not real.is_relative_to(self._root):
            raise ToolError(f"{raw} is outside the workspace {self._root}; only paths inside it can be used")
        return real

    def _view(self, path: Path, raw: str, view_range: object) -> ToolOutcome:
        if path.is_dir():
            if view_range is not None:
                raise ToolError("view_range applies to files, not directories")
            return ToolOutcome(self._list_directory(path, raw))
        lines = _split_lines(self._read(path, raw))
        start, end = _line_window(view_range, len(lines))
        return ToolOutcome(_capped_view(lines, start, end, self._view_cap) or f"{raw} is empty")

    def _list_directory(self, directory: Path, raw: str) -> str:
        entries = _walk(directory, self._DIRECTORY_DEPTH)
        shown = entries[: self._DIRECTORY_ENTRIES]
        header = f"files and directories up to {self._DIRECTORY_DEPTH} levels deep in {raw}, excluding hidden items:"
        more = len(entries) - len(shown)
        footer = [f"[... {more} more entries not shown ...]"] if more else []
        return _cut(self._view_cap, "\n".join([header, *shown, *footer]))

    def _create(self, path: Path, raw: str, file_text: str) -> ToolOutcome:
        if path.is_dir():
            raise ToolError(f"{raw} is a directory")
        existed = path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(file_text, encoding="utf-8")
        return ToolOutcome(f"{'overwrote' if existed else 'created'} {raw}")

    def _str_replace(self, path: Path, raw: str, old_str: str, new_str: str) -> ToolOutcome:
        if not old_str:
            raise ToolError("old_str must not be empty")
        text = self._read(path, raw)
        count = text.count(old_str)
        if count == 0:
            raise ToolError(f"no replacement made: old_str does not occur in {raw} (0 occurrences)")
        if count > 1:
            lines = ", ".join(str(line) for line in _occurrence_lines(text, old_str))
            raise ToolError(
                f"no replacement made: old_str occurs {count} times in {raw} (lines {lines}); "
                "include more context to make it unique"
            )
        index = text.index(old_str)
        updated = text[:index] + new_str + text[index + len(old_str) :]
        path.write_text(updated, encoding="utf-8")
        first = text.count("\n", 0, index) + 1
        last = first + new_str.count("\n")
        return ToolOutcome(_cut(self._view_cap, f"edited {raw}:\n{_snippet(updated, first, last)}"))

    def _insert(self, path: Path, raw: str, after_line: int, insert_text: str) -> ToolOutcome:
        lines = _split_lines(self._read(path, raw))
        if not 0 <= after_line <= len(lines):
            raise ToolError(f"insert_line {after_line} is out of range: {raw} has {len(lines)} lines (0 = top)")
        if after_line and not lines[after_line - 1].endswith("\n"):
            lines[after_line - 1] += "\n"  # the old last line had no newline; the new text needs its own line
        block = insert_text if insert_text.endswith("\n") else insert_text + "\n"
        lines[after_line:after_line] = [block]
        updated = "".join(lines)
        path.write_text(updated, encoding="utf-8")
        last = after_line + block.count("\n")
        snippet = _snippet(updated, after_line + 1, last)
        return ToolOutcome(_cut(self._view_cap, f"inserted after line {after_line} of {raw}:\n{snippet}"))

    def _read(self, path: Path, raw: str) -> str:
        if not path.exists():
            raise ToolError(f"{raw} does not exist")
        if path.is_dir():
            raise ToolError(f"{raw} is a directory")
        size = path.stat().st_size
        if size > self._max_file_bytes:
            raise ToolError(
                f"{raw} is {size} bytes, over the {self._max_file_bytes}-byte limit; use bash (head, sed -n)"
            )
        data = path.read_bytes()
        try:
            if b"\0" in data:
                raise UnicodeError  # NUL decodes as UTF-8 but means binary
            return data.decode("utf-8")
        except UnicodeError:
            raise ToolError(f"{raw} is not a UTF-8 text file (binary?); inspect it with bash instead") from None


def _walk(directory: Path, depth: int, prefix: str = "") -> list[str]:
    """Non-hidden entries as paths relative to the listed directory. Symlinked directories
    are listed but not entered: they may lead out of the workspace."""
    entries: list[str] = []
    for child in sorted(directory.iterdir(), key=lambda entry: entry.name):
        if child.name.startswith("."):
            continue
        relative = f"{prefix}{child.name}"
        is_dir = child.is_dir()
        entries.append(f"{relative}/" if is_dir else relative)
        if is_dir and depth > 1 and not child.is_symlink():
            entries.extend(_walk(child, depth - 1, f"{relative}/"))
    return entries


def _split_lines(text: str) -> list[str]:
    """Lines with their newlines, split on "\\n" only (str.splitlines also splits on form
    feeds and other separators, which would throw line numbers off)."""
    pieces = text.split("\n")
    lines = [piece + "\n" for piece in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])
    return lines


def _numbered(lines: list[str], first: int) -> str:
    """The `cat -n` layout the model knows: the number right-aligned in 6 columns, then a tab."""
    return "\n".join(f"{number:6}\t{line.rstrip(_NEWLINE)}" for number, line in enumerate(lines, first))


def _capped_view(lines: list[str], start: int, end: int, cap: int) -> str:
    """Lines `start`..`end` numbered, as many whole lines as fit in `cap` characters, and
    where the rest is: the model asks for it with a view_range."""
    shown: list[str] = []
    used = 0
    for number in range(start, end + 1):
        line = f"{number:6}\t{lines[number - 1].rstrip(_NEWLINE)}"
        if used + len(line) + 1 > cap:
            following = number
            if not shown:
                # One line longer than a whole view: its start, so the view says something.
                shown.append(line[: max(0, cap - 200)] + f" [... line {number} cut: {len(line)} characters]")
                following = number + 1
            rest = f"[lines {start}-{following - 1} of {len(lines)} shown: a view shows at most {cap} characters; "
            if following <= end:
                rest += f"see more with view_range [{following}, {min(end, following + 200)}], or "
            rest += "search with bash (grep -n)]"
            return "\n".join([*shown, rest])
        shown.append(line)
        used += len(line) + 1
    return "\n".join(shown)


def _cut(cap: int, text: str) -> str:
    if len(text) <= cap:
        return text
    return f"{text[:cap]}\n[... {len(text) - cap} more characters not shown]"


def _snippet(text: str, first: int, last: int, context: int = 3) -> str:
    lines = _split_lines(text)
    start = max(1, first - context)
    end = min(len(lines), last + context)
    return _numbered(lines[start - 1 : end], start)


def _occurrence_lines(text: str, needle: str) -> list[int]:
    found: list[int] = []
    index = text.find(needle)
    while index != -1:
        found.append(text.count("\n", 0, index) + 1)
        index = text.find(needle, index + 1)
    return found


def _line_window(view_range: object, line_count: int) -> tuple[int, int]:
    """1-based inclusive [start, end] from a view_range; -1 (or past the end) means the last line."""
    if view_range is None:
        return 1, line_count
    if not (isinstance(view_range, list) and len(view_range) == 2 and all(_is_int(bound) for bound in view_range)):
        raise ToolError("view_range must be two integers [start, end]; end -1 means the end of the file")
    start, end = view_range
    if not 1 <= start <= max(line_count, 1):
        raise ToolError(f"view_range start {start} is out of range: the file has {line_count} lines")
    if end == -1 or end > line_count:
        end = line_count
    if end < start:
        raise ToolError(f"view_range end {end} is before start {start}")
    return start, end


def _insert_text(arguments: dict[str, Any]) -> str:
    # text_editor_20250728 sends `insert_text`; older tool versions sent `new_str`.
    if "insert_text" in arguments:
        return _required_str(arguments, "insert_text")
    if "new_str" in arguments:
        return _required_str(arguments, "new_str")
    raise ToolError("`insert_text` is required for insert")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _required_str(arguments: dict[str, Any], key: str) -> str:
    value = arguments.get(key)
    if not isinstance(value, str):
        raise ToolError(f"`{key}` is required and must be a string")
    return value


def _optional_str(arguments: dict[str, Any], key: str, default: str) -> str:
    value = arguments.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ToolError(f"`{key}` must be a string")
    return value


def _required_int(arguments: dict[str, Any], key: str) -> int:
    value = arguments.get(key)
    if not _is_int(value):
        raise ToolError(f"`{key}` is required and must be an integer")
    return value
