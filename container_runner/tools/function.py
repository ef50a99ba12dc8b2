"""Custom tools whose input is a msgspec Struct: the JSON schema the model sees and the
validation of what it sends come from the same type."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

import msgspec

from container_runner.tools.base import ToolError, ToolOutcome

InputT = TypeVar("InputT", bound=msgspec.Struct)


def input_schema(input_type: type[msgspec.Struct]) -> dict[str, Any]:
    """msgspec puts the struct under `$defs`; the Messages API wants the object inline."""
    schema = msgspec.json.schema(input_type)
    definitions = schema.pop("$defs", {})
    ref = schema.get("$ref", "")
    body: dict[str, Any] = dict(definitions[ref.rsplit("/", 1)[-1]]) if ref else schema
    body.pop("title", None)
    if definitions and len(definitions) > 1:
        body["$defs"] = definitions
    return body


class FunctionTool(Generic[InputT]):
    name: ClassVar[str]
    description: ClassVar[str]
    input_type: type[InputT]

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": input_schema(self.input_type)}

    def run(self, arguments: dict[str, Any]) -> ToolOutcome:
        try:
            parsed = msgspec.convert(arguments, self.input_type, strict=False)
        except msgspec.ValidationError as exc:
            raise ToolError(f"invalid input for {self.name}: {exc}") from None
        return self.call(parsed)

    def call(self, arguments: InputT) -> ToolOutcome:
        raise NotImplementedError
