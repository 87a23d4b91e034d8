"""``--format`` as docker takes it: Go ``text/template`` for the part docker users type.

Supported: text and ``{{pipeline}}`` actions with ``{{-``/``-}}`` trimming and ``{{/* */}}``
comments; ``.Field.Chains`` on the data (a mapping), ``$`` and variables (``{{$v := ...}}``,
``{{range $k, $v := ...}}``); ``if``/``else if``/``else``, ``range`` (lists; mappings in key
order) and ``with``, each with ``end``; pipelines with ``|``; string, number, ``true``/``false``/
``nil`` literals and parentheses; Go's functions ``and or not len index print printf println eq
ne lt le gt ge`` and docker's ``json join split lower upper title pad truncate``. A mapping
value that is callable is a method: ``{{.Label "com.example"}}``.

Values print as Go's ``%v`` prints them: ``<no value>`` for a missing key of a mixed mapping,
``[a b]`` for a list, ``map[k:v]`` for a mapping. A missing key of a mapping whose values are
all strings (labels) is the empty string, as Go gives for a ``map[string]string``.

Besides a template, ``json`` prints each item as one line of JSON, and a template that starts
with ``table`` prints a header row and aligns columns (docker's ``table {{.ID}}\\t{{.Names}}``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from berth.cli.usage import UsageError

NO_VALUE = "<no value>"


class TemplateError(UsageError):
    """The template does not parse (docker: ``template parsing error: ...``, exit 125)."""


class TemplateExecError(UsageError):
    """The template parsed but cannot run on this item (a field of a nil value, a bad call)."""


# ---------------------------------------------------------------------------- lexing

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<field>(?:\.[A-Za-z_]\w*)+|\.)
  | (?P<variable>\$\w*(?:\.[A-Za-z_]\w*)*)
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<ident>[A-Za-z_]\w*)
  | (?P<punct>[|(),])
    """,
    re.VERBOSE,
)
_ACTION_END = re.compile(r"(?:\s+(-))?\s*\}\}")


class _Token(NamedTuple):
    kind: str
    text: str
    position: int


def _lex_action(source: str, start: int) -> tuple[list[_Token], int, bool]:
    """The tokens of the action beginning at ``start`` (after ``{{``), the index after its
    ``}}``, and whether it ends with `` -}}`` (trim the whitespace that follows)."""
    tokens: list[_Token] = []
    position = start
    while True:
        end = _ACTION_END.match(source, position)
        if end:
            return tokens, end.end(), end.group(1) == "-"
        if position >= len(source):
            raise TemplateError(f"template: unclosed action starting at offset {start - 2}")
        match = _TOKEN.match(source, position)
        if match is None:
            raise TemplateError(
                f"template: unexpected {source[position]!r} in action at offset {position}"
            )
        if match.lastgroup != "space":
            tokens.append(_Token(match.lastgroup or "", match.group(), position))
        position = match.end()


# ---------------------------------------------------------------------------- the tree


class _Pipeline(NamedTuple):
    declare: list[str]
    commands: list[list[Any]]
    text: str


class _Text(NamedTuple):
    text: str


class _Action(NamedTuple):
    pipeline: _Pipeline


class _Block(NamedTuple):
    kind: str  # if, range, with
    pipeline: _Pipeline
    body: list[Any]
    otherwise: list[Any]


class _Field(NamedTuple):
    chain: tuple[str, ...]
    text: str


class _Variable(NamedTuple):
    name: str
    chain: tuple[str, ...]
    text: str


class _Literal(NamedTuple):
    value: Any


class _Function(NamedTuple):
    name: str


def _parse_operand(tokens: list[_Token], index: int) -> tuple[Any, int]:
    token = tokens[index]
    if token.kind == "field":
        chain = tuple(part for part in token.text.split(".") if part)
        return _Field(chain, token.text), index + 1
    if token.kind == "variable":
        name, *rest = token.text.split(".")
        return _Variable(name, tuple(rest), token.text), index + 1
    if token.kind == "string":
        return _Literal(json.loads(token.text)), index + 1
    if token.kind == "raw":
        return _Literal(token.text[1:-1]), index + 1
    if token.kind == "number":
        text = token.text
        number = float(text) if any(c in text for c in ".eE") else int(text)
        return _Literal(number), index + 1
    if token.kind == "ident":
        constants = {"true": True, "false": False, "nil": None}
        if token.text in constants:
            return _Literal(constants[token.text]), index + 1
        if token.text not in FUNCTIONS:
            raise TemplateError(f'template: function "{token.text}" not defined')
        return _Function(token.text), index + 1
    if token.text == "(":
        depth, end = 1, index + 1
        while end < len(tokens) and depth:
            depth += (
                {"(": 1, ")": -1}.get(tokens[end].text, 0) if tokens[end].kind == "punct" else 0
            )
            end += 1
        if depth:
            raise TemplateError("template: unclosed left paren")
        return _parse_pipeline(tokens[index + 1 : end - 1], "(...)"), end
    raise TemplateError(f"template: unexpected {token.text!r} in operand")


def _parse_pipeline(tokens: list[_Token], text: str) -> _Pipeline:
    declare: list[str] = []
    for at, token in enumerate(tokens):
        if token.kind in ("declare", "assign"):
            names = [t.text for t in tokens[:at] if t.text != ","]
            if not names or any(not name.startswith("$") or "." in name for name in names):
                raise TemplateError(f"template: bad variable declaration in {text!r}")
            declare, tokens = names, tokens[at + 1 :]
            break
    commands: list[list[Any]] = [[]]
    index = 0
    while index < len(tokens):
        if tokens[index].text == "|" and tokens[index].kind == "punct":
            if not commands[-1]:
                raise TemplateError(f"template: missing command before '|' in {text!r}")
            commands.append([])
            index += 1
            continue
        operand, index = _parse_operand(tokens, index)
        commands[-1].append(operand)
    if not commands[-1]:
        raise TemplateError(f"template: missing value for command in {text!r}")
    return _Pipeline(declare, commands, text)


def parse(source: str) -> list[Any]:
    """The template's tree.

    Raises:
        TemplateError: it does not parse, with where and why.
    """
    root: list[Any] = []
    stack: list[tuple[_Block, list[Any]]] = []  # open blocks and the list to append to
    current = root
    position = 0
    trim_next = False
    while position < len(source):
        opening = source.find("{{", position)
        text = source[position:] if opening < 0 else source[position:opening]
        if trim_next:
            text = text.lstrip()
        if opening >= 0 and source.startswith("{{- ", opening):
            text = text.rstrip()
        if text:
            current.append(_Text(text))
        if opening < 0:
            break
        start = opening + (4 if source.startswith("{{- ", opening) else 2)
        comment = re.match(r"/\*.*?\*/\s*(-?)\}\}", source[start:], re.DOTALL)
        if comment:
            position, trim_next = start + comment.end(), comment.group(1) == "-"
            continue
        tokens, position, trim_next = _lex_action(source, start)
        action_text = source[opening:position]
        if not tokens:
            raise TemplateError(f"template: missing value for command in {action_text!r}")
        keyword = tokens[0].text if tokens[0].kind == "ident" else ""
        if keyword in ("if", "range", "with"):
            block = _Block(keyword, _parse_pipeline(tokens[1:], action_text), [], [])
            current.append(block)
            stack.append((block, current))
            current = block.body
        elif keyword == "else":
            if not stack or current is stack[-1][0].otherwise:
                raise TemplateError(f"template: unexpected {{{{else}}}} in {action_text!r}")
            block = stack[-1][0]
            current = block.otherwise
            if len(tokens) > 1 and tokens[1].text in ("if", "with"):
                # {{else if x}} is {{else}}{{if x}} ... with one shared {{end}}.
                nested = _Block(tokens[1].text, _parse_pipeline(tokens[2:], action_text), [], [])
                current.append(nested)
                stack.append((nested, current))
                current.append(_ElseChain())
                current = nested.body
        elif keyword == "end":
            if not stack:
                raise TemplateError("template: unexpected {{end}}")
            _, current = stack.pop()
            # Close every {{else if}} opened inside this block at the same time.
            while current and isinstance(current[-1], _ElseChain):
                current.pop()
                _, current = stack.pop()
        elif keyword in ("define", "template", "block", "break", "continue"):
            raise TemplateError(f"template: {{{{{keyword}}}}} is not supported")
        else:
            current.append(_Action(_parse_pipeline(tokens, action_text)))
    if stack:
        raise TemplateError(
            f"template: unexpected EOF: {{{{{stack[-1][0].kind}}}}} has no {{{{end}}}}"
        )
    return root


class _ElseChain:
    """A marker after an ``{{else if}}`` block: its ``{{end}}`` also ends the enclosing one."""


# ---------------------------------------------------------------------------- values


def go_string(value: Any) -> str:
    """``value`` as Go's ``%v`` prints it."""
    if value is None:
        return NO_VALUE
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value).replace("e+0", "e+").replace("e-0", "e-")
    if isinstance(value, Mapping):
        items = " ".join(f"{k}:{_inner(v)}" for k, v in sorted(value.items(), key=_key))
        return f"map[{items}]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_inner(v) for v in value) + "]"
    return str(value)


def _inner(value: Any) -> str:
    return "<nil>" if value is None else go_string(value)


def _key(item: tuple[Any, Any]) -> str:
    return str(item[0])


def truth(value: Any) -> bool:
    """Go template truth: false, 0, nil and empty strings, lists and maps are false."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float | str | list | tuple | dict | Mapping):
        return bool(value)
    return True


def _missing(mapping: Mapping[str, Any]) -> Any:
    """A missing key: ``""`` in a map of strings (Go's zero string), else ``<no value>``."""
    values = list(mapping.values())
    return "" if values and all(isinstance(v, str) for v in values) else None


def _field(value: Any, name: str, where: str) -> Any:
    if isinstance(value, Mapping):
        return value[name] if name in value else _missing(value)
    if value is None:
        raise TemplateExecError(f"at <{where}>: nil pointer evaluating interface {{}}.{name}")
    raise TemplateExecError(
        f"at <{where}>: can't evaluate field {name} in type {type(value).__name__}"
    )


# ---------------------------------------------------------------------------- functions


def _json(value: Any) -> str:
    return json.dumps(_data(value), ensure_ascii=False, separators=(",", ":"), default=str)


def _data(value: Any) -> Any:
    """``value`` without its methods (callable values), as Go's JSON encoder leaves them out."""
    if isinstance(value, Mapping):
        return {k: _data(v) for k, v in value.items() if not callable(v)}
    if isinstance(value, list | tuple):
        return [_data(v) for v in value]
    return value


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, Mapping):
            item = item[key] if key in item else _missing(item)
        elif isinstance(item, list | tuple | str):
            if not isinstance(key, int) or not 0 <= key < len(item):
                raise TemplateExecError(f"error calling index: index out of range: {key}")
            item = item[key]
        elif item is None:
            raise TemplateExecError("error calling index: index of untyped nil")
        else:
            raise TemplateExecError(f"error calling index: can't index item of type {item!r}")
    return item


def _len(item: Any) -> int:
    if isinstance(item, Mapping | list | tuple | str):
        return len(item)
    raise TemplateExecError(f"error calling len: len of type {type(item).__name__}")


_VERB = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d+))?([a-zA-Z%])")


def _printf(form: str, *args: Any) -> str:
    values = list(args)

    def one(match: re.Match[str]) -> str:
        flags, width, precision, verb = match.groups()
        if verb == "%":
            return "%"
        if not values:
            return f"%!{verb}(MISSING)"
        value = values.pop(0)
        spec = f"{flags.replace('#', '')}{width}"
        if verb in "dxXob" and isinstance(value, int | float) and not isinstance(value, bool):
            return format(int(value), f"{spec}{verb if verb != 'b' else 'b'}")
        if verb in "feEgG" and isinstance(value, int | float) and not isinstance(value, bool):
            return format(float(value), f"{spec}.{precision or 6}{verb}")
        text = json.dumps(go_string(value)) if verb == "q" else go_string(value)
        if precision:
            text = text[: int(precision)]
        return format(text, f"{'<' if '-' in flags else '>'}{width}") if width else text

    return _VERB.sub(one, form)


def _compare(name: str, test: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def compare(left: Any, *rights: Any) -> bool:
        if not rights:
            raise TemplateExecError(f"error calling {name}: missing argument for comparison")
        try:
            return any(test(left, right) for right in rights)
        except TypeError:
            raise TemplateExecError(f"error calling {name}: incompatible types") from None

    return compare


def _pad(value: Any, left: int, right: int) -> str:
    return " " * left + go_string(value) + " " * right


def _truncate(value: Any, length: int) -> str:
    return go_string(value)[:length]


def _join(items: Any, separator: str) -> str:
    if not isinstance(items, list | tuple):
        raise TemplateExecError("error calling join: not a list")
    return separator.join(go_string(item) for item in items)


def _print(*args: Any) -> str:
    # Go's Sprint: a space between operands when neither is a string.
    out = ""
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out += " "
        out += go_string(arg)
    return out


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "and": lambda *args: next((a for a in args if not truth(a)), args[-1] if args else None),
    "or": lambda *args: next((a for a in args if truth(a)), args[-1] if args else None),
    "not": lambda value: not truth(value),
    "len": _len,
    "index": _index,
    "print": _print,
    "printf": _printf,
    "println": lambda *args: " ".join(go_string(a) for a in args) + "\n",
    "eq": _compare("eq", lambda a, b: a == b),
    "ne": _compare("ne", lambda a, b: a != b),
    "lt": _compare("lt", lambda a, b: a < b),
    "le": _compare("le", lambda a, b: a <= b),
    "gt": _compare("gt", lambda a, b: a > b),
    "ge": _compare("ge", lambda a, b: a >= b),
    "json": _json,
    "join": _join,
    "split": lambda text, sep: go_string(text).split(sep),
    "lower": lambda text: go_string(text).lower(),
    "upper": lambda text: go_string(text).upper(),
    "title": lambda text: go_string(text).title(),
    "pad": _pad,
    "truncate": _truncate,
}


# ---------------------------------------------------------------------------- execution


class _Scope:
    def __init__(self, root: Any) -> None:
        self.frames: list[dict[str, Any]] = [{"$": root}]

    def get(self, name: str) -> Any:
        for frame in reversed(self.frames):
            if name in frame:
                return frame[name]
        raise TemplateExecError(f'undefined variable "{name}"')


def _operand(node: Any, dot: Any, scope: _Scope, final: list[Any]) -> Any:
    if isinstance(node, _Literal):
        return node.value
    if isinstance(node, _Pipeline):
        return _pipeline(node, dot, scope)
    if isinstance(node, _Field):
        value = dot
        for name in node.chain:
            value = _field(value, name, node.text)
        return value
    if isinstance(node, _Variable):
        value = scope.get(node.name)
        for name in node.chain:
            value = _field(value, name, node.text)
        return value
    raise TemplateExecError(f"can't evaluate {node!r}")


def _command(operands: list[Any], dot: Any, scope: _Scope, piped: list[Any]) -> Any:
    head, rest = operands[0], operands[1:]
    args = [_operand(op, dot, scope, []) for op in rest] + piped
    if isinstance(head, _Function):
        try:
            return FUNCTIONS[head.name](*args)
        except TemplateExecError:
            raise
        except (TypeError, ValueError, KeyError) as err:
            raise TemplateExecError(f"error calling {head.name}: {err}") from None
    value = _operand(head, dot, scope, [])
    if callable(value):
        try:
            return value(*args)
        except TypeError as err:
            raise TemplateExecError(f"wrong arguments for method: {err}") from None
    if args:
        raise TemplateExecError(f"can't give argument to non-function {go_string(value)!r}")
    return value


def _pipeline(pipeline: _Pipeline, dot: Any, scope: _Scope) -> Any:
    value: list[Any] = []
    for command in pipeline.commands:
        value = [_command(command, dot, scope, value)]
    result = value[0]
    if pipeline.declare and len(pipeline.declare) == 1:
        scope.frames[-1][pipeline.declare[0]] = result
    return result


def _iterate(value: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(value, Mapping):
        for key in sorted(value, key=str):
            yield key, value[key]
    elif isinstance(value, list | tuple):
        yield from enumerate(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        yield from ((i, i) for i in range(value))
    elif value is not None:
        raise TemplateExecError(f"range can't iterate over {go_string(value)}")


def _execute(nodes: list[Any], dot: Any, scope: _Scope, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, _Text):
            out.append(node.text)
        elif isinstance(node, _Action):
            value = _pipeline(node.pipeline, dot, scope)
            if not node.pipeline.declare:
                out.append(go_string(value))
        elif isinstance(node, _Block):
            scope.frames.append({})
            try:
                _block(node, dot, scope, out)
            finally:
                scope.frames.pop()


def _block(node: _Block, dot: Any, scope: _Scope, out: list[str]) -> None:
    declare = node.pipeline.declare
    if node.kind == "range":
        pipeline = _Pipeline([], node.pipeline.commands, node.pipeline.text)
        items = list(_iterate(_pipeline(pipeline, dot, scope)))
        for key, item in items:
            if len(declare) == 2:
                scope.frames[-1].update({declare[0]: key, declare[1]: item})
            elif declare:
                scope.frames[-1][declare[0]] = item
            _execute(node.body, item, scope, out)
        if not items:
            _execute(node.otherwise, dot, scope, out)
        return
    value = _pipeline(node.pipeline, dot, scope)
    if truth(value):
        _execute(node.body, value if node.kind == "with" else dot, scope, out)
    else:
        _execute(node.otherwise, dot, scope, out)


class Template(NamedTuple):
    """A parsed template; :meth:`render` runs it on one item."""

    source: str
    tree: list[Any]

    def render(self, data: Any) -> str:
        """The template's output for ``data``.

        Raises:
            TemplateExecError: it cannot run on ``data`` (docker: ``template: ... executing``).
        """
        out: list[str] = []
        _execute(self.tree, data, _Scope(data), out)
        return "".join(out)


def compile_template(source: str) -> Template:
    """Parse ``source`` once for many items.

    Raises:
        TemplateError: it does not parse.
    """
    return Template(source, parse(source))


# ---------------------------------------------------------------------------- formats


class Format(NamedTuple):
    """A verb's ``--format``: ``json``, a ``table`` template, or a plain template."""

    kind: str  # "json", "table" or "template"
    template: Template | None = None


def parse_format(text: str) -> Format:
    """docker's ``--format`` value: ``json``, ``table [template]`` or a template.

    ``\\t`` and ``\\n`` written literally (as a shell passes them) are a tab and a newline.

    Raises:
        TemplateError: the template does not parse.
    """
    stripped = text.strip()
    if stripped == "json":
        return Format("json")
    if stripped == "table" or stripped.startswith("table "):
        source = stripped[len("table") :].strip()
        return Format("table", compile_template(_escapes(source)) if source else None)
    return Format("template", compile_template(_escapes(text)))


def _escapes(text: str) -> str:
    return text.replace("\\t", "\t").replace("\\n", "\n")


def tabulate(lines: Sequence[str], min_width: int = 10, padding: int = 3) -> list[str]:
    """Align tab-separated cells as Go's ``tabwriter`` (docker's 10, 1, 3, ' '): every
    tab-terminated cell padded to its column's width plus ``padding``, at least ``min_width``."""
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for cells in rows:
        for column, cell in enumerate(cells[:-1]):
            widths[column] = max(widths.get(column, 0), len(cell) + padding, min_width)
    return [
        ("".join(cell.ljust(widths[c]) for c, cell in enumerate(cells[:-1])) + cells[-1]).rstrip()
        for cells in rows
    ]


def render_rows(
    form: Format,
    rows: Sequence[Mapping[str, Any]],
    header: Mapping[str, Any] | None = None,
    default: Template | None = None,
) -> list[str]:
    """The lines ``--format`` prints for ``rows``.

    ``header`` is the table's header row as data (each field its column title); ``default``
    the template of a bare ``table``.

    Raises:
        TemplateExecError: the template cannot run on a row.
    """
    if form.kind == "json":
        return [_json(row) for row in rows]
    template = form.template or default
    if template is None:
        raise TemplateError("template: a table needs a template")
    lines = [template.render(row) for row in rows]
    if form.kind != "table":
        return lines
    title = [template.render(header)] if header is not None else []
    return tabulate([*title, *lines])
