"""A small evaluator of Terraform expressions over python-hcl2's parse tree.

No terraform binary can run in the test environment, yet the route expansion, the function map
and the IAM map are Terraform expressions: re-implementing them in Python would only test the
re-implementation. This module evaluates the expressions themselves: locals, variable defaults
(or overrides) and resource arguments, with `each.key`/`each.value` bound for `for_each`.

Anything only known after apply (resource attributes, data sources) evaluates to an `Unknown`
that renders as its reference, e.g. `${aws_lambda_function.this["job-worker"].arn}`, so a test
can still check which resource an argument points at. Collections iterate in Terraform's order
(map and object keys sorted). Functions are the subset the configuration uses; an unsupported
one raises, which fails the test rather than guessing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

import hcl2
from lark import Token, Tree


class EvalError(Exception):
    """An expression this evaluator cannot evaluate (or Terraform would reject)."""


class Unknown:
    """A value known only after apply, named by the reference that produced it."""

    def __init__(self, ref: str):
        self.ref = ref

    def attr(self, name: str) -> "Unknown":
        return Unknown(f"{self.ref}.{name}")

    def index(self, key: Any) -> "Unknown":
        return Unknown(f"{self.ref}[{json.dumps(key)}]")

    def __str__(self) -> str:
        return "${" + self.ref + "}"

    def __repr__(self) -> str:
        return f"Unknown({self.ref!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unknown) and other.ref == self.ref

    def __hash__(self) -> int:
        return hash(self.ref)


class _Namespace:
    """`var`, `local`, `path`, `each`, a resource type, `data`: resolved attribute by attribute."""

    def __init__(self, name: str, get: Callable[[str], Any]):
        self.name = name
        self.get = get


def _children(node: Tree) -> list:
    """A node's meaningful children: no punctuation tokens, no newlines or comments."""
    out = []
    for child in node.children:
        if isinstance(child, Token):
            continue
        if isinstance(child, Tree) and child.data == "new_line_or_comment":
            continue
        out.append(child)
    return out


def _tokens(node: Tree) -> list[str]:
    return [str(c) for c in node.children if isinstance(c, Token)]


def _unescape(text: str) -> str:
    return re.sub(r'\\(["\\nrt])', lambda m: {"n": "\n", "r": "\r", "t": "\t"}.get(m.group(1), m.group(1)), text)


def _tf_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value is None:
        raise EvalError("null in a string template")
    if isinstance(value, (list, dict)):
        raise EvalError(f"cannot use a collection in a string template: {value!r}")
    return str(value)


def _sorted_items(value: Any) -> list[tuple[Any, Any]]:
    if isinstance(value, dict):
        return sorted(value.items())
    if isinstance(value, (list, tuple)):
        return list(enumerate(value))
    raise EvalError(f"cannot iterate over {value!r}")


def _tf_format(fmt: str, args: list) -> str:
    it = iter(args)

    def verb(m: re.Match) -> str:
        if m.group(0) == "%%":
            return "%"
        return _tf_str(next(it))

    return re.sub(r"%%|%[-+ #0]*\d*(?:\.\d+)?[dsvfq]", verb, fmt)


def _coalesce(*args: Any) -> Any:
    for a in args:
        if a is not None and a != "":
            return a
    raise EvalError("coalesce: no non-null, non-empty argument")


def _flatten(value: list) -> list:
    out: list = []
    for v in value:
        out.extend(_flatten(v) if isinstance(v, list) else [v])
    return out


def _merge(*maps: dict) -> dict:
    out: dict = {}
    for m in maps:
        if m is None:
            continue
        if not isinstance(m, dict):
            raise EvalError(f"merge of a non-map: {m!r}")
        out.update(m)
    return out


def _distinct(value: list) -> list:
    out: list = []
    for v in value:
        if v not in out:
            out.append(v)
    return out


def _toset(value: list) -> list:
    items = _distinct(list(value))
    return sorted(items) if all(isinstance(v, str) for v in items) else items


def _replace(s: str, old: str, new: str) -> str:
    if len(old) > 1 and old.startswith("/") and old.endswith("/"):
        return re.sub(old[1:-1], re.sub(r"\$(\d+)", r"\\\1", new), s)
    return s.replace(old, new)


def _regexall(pattern: str, s: str) -> list:
    rx = re.compile(pattern)
    out = []
    for m in rx.finditer(s):
        if rx.groups == 0:
            out.append(m.group(0))
        elif rx.groupindex:
            out.append({k: m.group(k) for k in rx.groupindex})
        else:
            out.append(list(m.groups()))
    return out


def _tf_range(*args: Any) -> list:
    nums = [int(a) for a in args]
    if len(nums) == 1:
        return list(range(nums[0]))
    if len(nums) == 2:
        return list(range(nums[0], nums[1]))
    return list(range(nums[0], nums[1], nums[2]))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Unknown):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "range": _tf_range,
    "join": lambda sep, items: sep.join(_tf_str(i) for i in items),
    "split": lambda sep, s: s.split(sep),
    "format": lambda fmt, *args: _tf_format(fmt, list(args)),
    "formatlist": lambda fmt, *lists: [
        _tf_format(fmt, list(row))
        for row in zip(*[lst if isinstance(lst, list) else itertools.repeat(lst) for lst in lists])
    ],
    "setproduct": lambda *lists: [list(p) for p in itertools.product(*lists)],
    "trimsuffix": lambda s, suffix: s[: -len(suffix)] if suffix and s.endswith(suffix) else s,
    "trimprefix": lambda s, prefix: s[len(prefix) :] if prefix and s.startswith(prefix) else s,
    "merge": _merge,
    "flatten": _flatten,
    "concat": lambda *lists: [x for lst in lists for x in lst],
    "keys": lambda m: sorted(m.keys()),
    "values": lambda m: [v for _, v in sorted(m.items())],
    "length": len,
    "lookup": lambda m, k, *default: m[k] if k in m else (default[0] if default else _raise(f"lookup: no key {k!r}")),
    "contains": lambda lst, v: v in lst,
    "distinct": _distinct,
    "sort": lambda lst: sorted(lst),
    "toset": _toset,
    "tolist": list,
    "tomap": dict,
    "tostring": lambda v: None if v is None else _tf_str(v),
    "tonumber": lambda v: None if v is None else (int(v) if str(v).lstrip("-").isdigit() else float(v)),
    "coalesce": _coalesce,
    "compact": lambda lst: [v for v in lst if v is not None and v != ""],
    "replace": _replace,
    "lower": lambda s: s.lower(),
    "upper": lambda s: s.upper(),
    "title": lambda s: re.sub(r"\b([a-z])", lambda m: m.group(1).upper(), s),
    "regexall": _regexall,
    "min": lambda *a: min(a),
    "max": lambda *a: max(a),
    "floor": lambda n: int(n // 1),
    "jsonencode": lambda v: json.dumps(_jsonable(v), separators=(",", ":")),
    "sha1": lambda s: hashlib.sha1(str(s).encode()).hexdigest(),
}


def _raise(msg: str) -> Any:
    raise EvalError(msg)


class Module:
    """One Terraform root module (a directory of .tf files)."""

    def __init__(
        self,
        directory: Path,
        variables: dict[str, Any] | None = None,
        path_module: str | None = None,
        local_overrides: dict[str, Any] | None = None,
    ):
        self.directory = Path(directory)
        self.path_module = path_module if path_module is not None else str(self.directory)
        self.variable_blocks: dict[str, dict[str, Tree]] = {}
        self.output_blocks: dict[str, dict[str, Tree]] = {}
        self.local_exprs: dict[str, Tree] = {}
        self.resources: dict[tuple[str, str, str], dict[str, Tree]] = {}
        self.resource_blocks: dict[tuple[str, str, str], Tree] = {}
        for tf in sorted(self.directory.glob("*.tf")):
            self._load(hcl2.parses_to_tree(tf.read_text()))
        unknown = set(variables or {}) - set(self.variable_blocks)
        if unknown:
            raise EvalError(f"no such variables: {sorted(unknown)}")
        self.overrides = dict(variables or {})
        self._locals: dict[str, Any] = dict(local_overrides or {})
        self._evaluating: set[str] = set()

    # ---- loading ---------------------------------------------------------------------------

    def _load(self, tree: Tree) -> None:
        body = _children(tree)[0]
        for block in _children(body):
            if block.data != "block":
                continue
            parts = _children(block)
            kind = self._name(parts[0])
            labels = [self._label(p) for p in parts[1:-1]]
            inner = parts[-1]
            attrs = self._attributes(inner)
            if kind == "variable":
                self.variable_blocks[labels[0]] = attrs
            elif kind == "output":
                self.output_blocks[labels[0]] = attrs
            elif kind == "locals":
                for name, expr in attrs.items():
                    if name in self.local_exprs:
                        raise EvalError(f"local.{name} is defined twice")
                    self.local_exprs[name] = expr
            elif kind in ("resource", "data"):
                key = (kind, labels[0], labels[1])
                self.resources[key] = attrs
                self.resource_blocks[key] = inner

    @staticmethod
    def _name(node: Tree) -> str:
        return str(node.children[0]) if isinstance(node, Tree) else str(node)

    @staticmethod
    def _label(node: Tree) -> str:
        if node.data == "string":
            return "".join(str(p.children[0]) for p in _children(node))
        return str(node.children[0])

    def _attributes(self, body: Tree) -> dict[str, Tree]:
        attrs = {}
        for child in _children(body):
            if child.data == "attribute":
                name_node, expr = _children(child)
                attrs[self._name(name_node)] = expr
        return attrs

    def blocks(self, body: Tree, kind: str) -> list[Tree]:
        """Nested blocks of a kind (e.g. "environment") in a resource body."""
        return [c for c in _children(body) if c.data == "block" and self._name(_children(c)[0]) == kind]

    # ---- public API ------------------------------------------------------------------------

    def var(self, name: str) -> Any:
        if name in self.overrides:
            return self.overrides[name]
        block = self.variable_blocks.get(name)
        if block is None:
            raise EvalError(f"no variable {name!r}")
        if "default" not in block:
            raise EvalError(f"variable {name!r} has no default and no override")
        return self.eval(block["default"], {})

    def local(self, name: str) -> Any:
        if name in self._locals:
            return self._locals[name]
        if name not in self.local_exprs:
            raise EvalError(f"no local {name!r}")
        if name in self._evaluating:
            raise EvalError(f"local.{name} depends on itself")
        self._evaluating.add(name)
        try:
            value = self.eval(self.local_exprs[name], {})
        finally:
            self._evaluating.discard(name)
        self._locals[name] = value
        return value

    def instances(self, rtype: str, rname: str, kind: str = "resource") -> dict[Any, dict[str, Any]]:
        """The instances a resource would have: key (for_each key, count index, or None) =>
        its `each`/`count` scope."""
        attrs = self.resources[(kind, rtype, rname)]
        if "for_each" in attrs:
            coll = self.eval(attrs["for_each"], {})
            if isinstance(coll, list):
                coll = {v: v for v in coll}
            return {k: {"each": {"key": k, "value": v}} for k, v in sorted(coll.items())}
        if "count" in attrs:
            return {i: {"count": {"index": i}} for i in range(int(self.eval(attrs["count"], {})))}
        return {None: {}}

    def argument(self, rtype: str, rname: str, arg: str, key: Any = None, kind: str = "resource") -> Any:
        """An argument of one instance of a resource."""
        scope = self.instances(rtype, rname, kind)[key]
        return self.eval(self.resources[(kind, rtype, rname)][arg], scope)

    def block_argument(self, rtype: str, rname: str, block: str, arg: str, key: Any = None, kind: str = "resource") -> Any:
        """An argument of a nested block (the first one of its kind) of one instance."""
        scope = self.instances(rtype, rname, kind)[key]
        nested = self.blocks(self.resource_blocks[(kind, rtype, rname)], block)
        if not nested:
            raise EvalError(f"{rtype}.{rname} has no {block} block")
        return self.eval(self._attributes(_children(nested[0])[-1])[arg], scope)

    def preconditions(self, rtype: str, rname: str, key: Any = None, kind: str = "resource") -> dict[str, Any]:
        """error_message => evaluated condition, for every lifecycle precondition of one instance."""
        scope = self.instances(rtype, rname, kind)[key]
        out = {}
        for lifecycle in self.blocks(self.resource_blocks[(kind, rtype, rname)], "lifecycle"):
            for pre in self.blocks(_children(lifecycle)[-1], "precondition"):
                attrs = self._attributes(_children(pre)[-1])
                out[self.eval(attrs["error_message"], scope)] = self.eval(attrs["condition"], scope)
        return out

    # ---- evaluation ------------------------------------------------------------------------

    def eval(self, node: Any, scope: dict[str, Any]) -> Any:
        if isinstance(node, Token):
            raise EvalError(f"unexpected token {node!r}")
        method = getattr(self, f"_eval_{node.data}", None)
        if method is None:
            raise EvalError(f"unsupported expression: {node.data}")
        return method(node, scope)

    def _eval_expr_term(self, node: Tree, scope: dict) -> Any:
        (inner,) = _children(node)
        return self.eval(inner, scope)

    def _eval_int_lit(self, node: Tree, scope: dict) -> Any:
        return int(str(node.children[0]))

    def _eval_float_lit(self, node: Tree, scope: dict) -> Any:
        return float(str(node.children[0]))

    def _eval_literal_value(self, node: Tree, scope: dict) -> Any:
        return {"true": True, "false": False, "null": None}[str(node.children[0])]

    def _eval_string(self, node: Tree, scope: dict) -> Any:
        parts = _children(node)
        if len(parts) == 1 and isinstance(parts[0].children[0], Tree):
            # "${expr}" alone keeps the expression's type (as Terraform does).
            return self.eval(_children(parts[0].children[0])[0], scope)
        out = []
        for part in parts:
            (piece,) = part.children
            if isinstance(piece, Token):
                text = str(piece)
                if piece.type == "ESCAPED_INTERPOLATION":
                    text = text[1:]
                out.append(_unescape(text))
            elif piece.data == "interpolation":
                out.append(str(self._render(self.eval(_children(piece)[0], scope))))
            else:
                raise EvalError(f"unsupported template directive {piece.data}")
        return "".join(out)

    @staticmethod
    def _render(value: Any) -> str:
        return str(value) if isinstance(value, Unknown) else _tf_str(value)

    def _eval_heredoc_template(self, node: Tree, scope: dict) -> Any:
        text = str(node.children[0])
        return text.split("\n", 1)[1].rsplit("\n", 2)[0] + "\n"

    def _eval_tuple(self, node: Tree, scope: dict) -> Any:
        return [self.eval(c, scope) for c in _children(node)]

    def _eval_object(self, node: Tree, scope: dict) -> Any:
        out = {}
        for elem in _children(node):
            key_node, value_node = _children(elem)
            key_expr = _children(key_node)[0]
            out[self._object_key(key_expr, scope)] = self.eval(value_node, scope)
        return out

    def _object_key(self, node: Any, scope: dict) -> str:
        if isinstance(node, Token):
            return str(node)
        if node.data == "keyword":
            return str(node.children[0])
        if node.data == "expr_term" and _children(node)[0].data == "identifier":
            return self._name(_children(node)[0])
        if node.data == "identifier":
            return self._name(node)
        return self._render(self.eval(node, scope))

    def _eval_identifier(self, node: Tree, scope: dict) -> Any:
        name = self._name(node)
        if name in scope:
            return scope[name]
        if name == "var":
            return _Namespace("var", self.var)
        if name == "local":
            return _Namespace("local", self.local)
        if name == "path":
            return _Namespace("path", lambda a: {"module": self.path_module, "root": self.path_module, "cwd": os.getcwd()}[a])
        if name == "data":
            return _Namespace("data", lambda t: _Namespace(f"data.{t}", lambda n: Unknown(f"data.{t}.{n}")))
        if name in ("each", "count"):
            raise EvalError(f"{name} outside a resource with {'for_each' if name == 'each' else 'count'}")
        # A resource type: resource.<type>.<name> is known only after apply.
        return _Namespace(name, lambda n: Unknown(f"{name}.{n}"))

    def _eval_get_attr_expr_term(self, node: Tree, scope: dict) -> Any:
        target_node, get_attr = _children(node)
        target = self.eval(target_node, scope)
        (name_node,) = _children(get_attr)
        return self._attr(target, self._name(name_node))

    @staticmethod
    def _attr(target: Any, name: str) -> Any:
        if isinstance(target, _Namespace):
            return target.get(name)
        if isinstance(target, Unknown):
            return target.attr(name)
        if isinstance(target, dict):
            if name not in target:
                raise EvalError(f"object has no attribute {name!r}")
            return target[name]
        raise EvalError(f"cannot read .{name} of {target!r}")

    def _eval_index_expr_term(self, node: Tree, scope: dict) -> Any:
        target_node, index = _children(node)
        target = self.eval(target_node, scope)
        if index.data == "short_index":
            key: Any = int(_tokens(index)[-1])
        else:
            key = self.eval(_children(index)[0], scope)
        if isinstance(target, Unknown):
            return target.index(key)
        if isinstance(target, _Namespace):
            raise EvalError(f"cannot index {target.name}")
        try:
            return target[key] if not isinstance(target, list) else target[int(key)]
        except (KeyError, IndexError, TypeError) as e:
            raise EvalError(f"invalid index {key!r}") from e

    def _eval_attr_splat_expr_term(self, node: Tree, scope: dict) -> Any:
        target_node, splat = _children(node)
        target = self.eval(target_node, scope)
        items = target if isinstance(target, list) else ([] if target is None else [target])
        out = []
        for item in items:
            for step in _children(splat):
                item = self._attr(item, self._name(_children(step)[0]))
            out.append(item)
        return out

    def _eval_function_call(self, node: Tree, scope: dict) -> Any:
        parts = _children(node)
        name = self._name(parts[0])
        arg_nodes = _children(parts[1]) if len(parts) > 1 else []
        expand = len(parts) > 1 and "..." in _tokens(parts[1])
        if name in ("try", "can"):
            for arg in arg_nodes:
                try:
                    value = self.eval(arg, scope)
                    return True if name == "can" else value
                except EvalError:
                    continue
            if name == "can":
                return False
            raise EvalError("try: every argument failed")
        args = [self.eval(a, scope) for a in arg_nodes]
        if expand:
            args = args[:-1] + list(args[-1])
        if name == "fileexists":
            return os.path.exists(args[0])
        if name == "filebase64sha256":
            return Unknown(f"filebase64sha256({args[0]})")
        if any(isinstance(a, Unknown) for a in args) and name not in ("coalesce", "compact", "concat", "merge", "flatten", "jsonencode", "try"):
            return Unknown(f"{name}(...)")
        fn = FUNCTIONS.get(name)
        if fn is None:
            raise EvalError(f"unsupported function {name}()")
        try:
            return fn(*args)
        except EvalError:
            raise
        except Exception as e:  # a Python error here is Terraform rejecting the call
            raise EvalError(f"{name}() failed: {e}") from e

    def _eval_conditional(self, node: Tree, scope: dict) -> Any:
        cond, yes, no = _children(node)
        c = self.eval(cond, scope)
        if isinstance(c, Unknown):
            return Unknown("conditional(...)")
        if not isinstance(c, bool):
            raise EvalError(f"condition is not a bool: {c!r}")
        return self.eval(yes if c else no, scope)

    def _eval_binary_op(self, node: Tree, scope: dict) -> Any:
        lhs_node, term = _children(node)
        op_node, rhs_node = _children(term)
        op = str(op_node.children[0])
        lhs = self.eval(lhs_node, scope)
        if op == "&&" and lhs is False:
            return False
        if op == "||" and lhs is True:
            return True
        rhs = self.eval(rhs_node, scope)
        if op in ("==", "!="):
            equal = lhs == rhs
            return equal if op == "==" else not equal
        if isinstance(lhs, Unknown) or isinstance(rhs, Unknown):
            return Unknown(f"({op})")
        ops: dict[str, Callable[[Any, Any], Any]] = {
            "+": lambda a, b: a + b,
            "-": lambda a, b: a - b,
            "*": lambda a, b: a * b,
            "/": lambda a, b: a / b,
            "%": lambda a, b: a % b,
            "<": lambda a, b: a < b,
            ">": lambda a, b: a > b,
            "<=": lambda a, b: a <= b,
            ">=": lambda a, b: a >= b,
            "&&": lambda a, b: a and b,
            "||": lambda a, b: a or b,
        }
        return ops[op](lhs, rhs)

    def _eval_unary_op(self, node: Tree, scope: dict) -> Any:
        op = _tokens(node)[0]
        value = self.eval(_children(node)[0], scope)
        if isinstance(value, Unknown):
            return Unknown(f"({op})")
        return -value if op == "-" else not value

    def _for_intro(self, node: Tree, scope: dict) -> tuple[list[str], list[tuple[Any, Any]]]:
        parts = _children(node)
        names = [self._name(p) for p in parts[:-1]]
        collection = self.eval(parts[-1], scope)
        if isinstance(collection, Unknown):
            raise EvalError(f"for over an unknown collection {collection}")
        return names, _sorted_items(collection)

    def _loop_scopes(self, intro: Tree, scope: dict):
        names, items = self._for_intro(intro, scope)
        for k, v in items:
            inner = dict(scope)
            if len(names) == 2:
                inner[names[0]], inner[names[1]] = k, v
            else:
                inner[names[0]] = v
            yield inner

    def _eval_for_tuple_expr(self, node: Tree, scope: dict) -> Any:
        parts = _children(node)
        intro, value = parts[0], parts[1]
        cond = parts[2] if len(parts) > 2 else None
        out = []
        for inner in self._loop_scopes(intro, scope):
            if cond is not None and not self.eval(_children(cond)[0], inner):
                continue
            out.append(self.eval(value, inner))
        return out

    def _eval_for_object_expr(self, node: Tree, scope: dict) -> Any:
        parts = _children(node)
        intro, key_node, value_node = parts[0], parts[1], parts[2]
        cond = parts[3] if len(parts) > 3 else None
        grouping = "..." in _tokens(node)
        out: dict = {}
        for inner in self._loop_scopes(intro, scope):
            if cond is not None and not self.eval(_children(cond)[0], inner):
                continue
            key = self._render(self.eval(key_node, inner))
            value = self.eval(value_node, inner)
            if grouping:
                out.setdefault(key, []).append(value)
            elif key in out:
                raise EvalError(f"duplicate key {key!r} in a for expression (Terraform rejects it)")
            else:
                out[key] = value
        return out
