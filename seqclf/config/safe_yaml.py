"""The one YAML reader for everything seqclf reads (config files, `--set` values, search spaces).

`yaml.safe_load` builds no objects, but it still trusts the document's size: ten lines of
nested aliases (`b: &b [*a, *a, ...]`) expand to billions of items once anything walks the
value, a later duplicate key silently replaces an earlier block, and deep nesting recurses
until Python gives up. This loader counts while it composes, so such a document is refused
after at most MAX_NODES nodes, and each refusal names the line.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import AliasEvent

from seqclf.errors import preview, shorten

MAX_BYTES = 64 * 1024  # a config is a few hundred bytes; parsing this much takes well under a second
MAX_NODES = 2_000  # nodes after expanding aliases (the shipped configs have about 50)
MAX_ALIASES = 32  # `*name` references
MAX_DEPTH = 32  # nesting of mappings and lists (a config needs 2)
_MERGE = "tag:yaml.org,2002:merge"


class YamlRefused(yaml.YAMLError):
    """Well-formed YAML that seqclf will not read: too big, too deep, aliases, duplicate keys."""


class _Limits:
    """Counts nodes (aliases expanded), aliases and depth while composing; refuses duplicate keys and values
    their tag cannot hold. Mixed into each loader below, before its composer."""

    def __init__(self) -> None:
        self._nodes = self._aliases = self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> its node count with aliases expanded

    def compose_node(self, parent: Any, index: Any) -> Any:
        line = self.peek_event().start_mark.line + 1
        if self.check_event(AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise YamlRefused(f"line {line}: more than {MAX_ALIASES} aliases (*name); write the values out")
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:  # the anchor is still being composed: `&a [*a]`
                raise YamlRefused(f"line {line}: an alias refers to the collection that contains it")
            self._count(self._sizes[id(node)], line)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlRefused(f"line {line}: nested more than {MAX_DEPTH} levels deep")
        before = self._nodes
        self._count(1, line)
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._sizes[id(node)] = self._nodes - before
        return node

    def _count(self, nodes: int, line: int) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise YamlRefused(f"line {line}: more than {MAX_NODES} values (aliases expanded); "
                              f"a config needs far fewer")

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        """A scalar its tag cannot hold (`2020-99-99`, an int of 5000 digits) is refused, naming its line."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as exc:
            kind = str(node.tag).rsplit(":", 1)[-1]
            raise YamlRefused(f"line {node.start_mark.line + 1}: {preview(node.value, 40)} is not a valid {kind} "
                              f"({shorten(str(exc), 80)})") from None

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """Refuse a key given twice in one mapping (YAML would keep only the last)."""
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE or not isinstance(key_node, yaml.ScalarNode):
                    continue  # `<<: *base` may be overridden by design; odd keys are refused later
                key, line = self.construct_object(key_node), key_node.start_mark.line + 1
                if key in first:
                    raise YamlRefused(f"duplicate key {key!s:.40} (lines {first[key]} and {line}); "
                                      f"YAML keeps only the last, so give each key once")
                first[key] = line
        return super().construct_mapping(node, deep=deep)



class _PythonLoader(_Limits, yaml.SafeLoader):
    """PyYAML's own reader, scanner and parser (pure Python), then its composer with the limits."""

    def __init__(self, text: str) -> None:
        yaml.SafeLoader.__init__(self, text)
        _Limits.__init__(self)


try:  # libyaml's parser, where PyYAML has it: the same events about seven times sooner (a config in 0.2 ms)
    from yaml.cyaml import CParser

    # Python's composer before libyaml's parser, which could compose too, but without the limits
    class _LibyamlLoader(_Limits, yaml.composer.Composer, CParser, yaml.constructor.SafeConstructor,
                         yaml.resolver.Resolver):
        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            _Limits.__init__(self)

    LOADERS: dict[str, type] = {"libyaml": _LibyamlLoader, "python": _PythonLoader}
except ImportError:  # PyYAML built without libyaml
    LOADERS = {"python": _PythonLoader}
_Loader = next(iter(LOADERS.values()))  # the first: libyaml where there is one


def load(text: str) -> Any:
    """Parse one YAML document with the limits above; raises yaml.YAMLError (YamlRefused included)."""
    if len(text) > MAX_BYTES:
        raise YamlRefused(f"{len(text):,} characters, more than the {MAX_BYTES:,} a config may have")
    try:
        return _load(_Loader, text)
    except yaml.YAMLError:
        if _Loader is _PythonLoader:
            raise
    # Refused: PyYAML's own parser says why, as seqclf always has (it names the character at fault, where
    # libyaml says "a character"; libyaml's scanner also stops 1000 levels deep before the limit's message)
    return _load(_PythonLoader, text)


def _load(kind: type, text: str) -> Any:
    loader = kind(text)
    try:
        return loader.get_single_data()
    except RecursionError:  # cannot happen below MAX_DEPTH; kept so no input reaches a traceback
        raise YamlRefused(f"nested too deeply (the limit is {MAX_DEPTH} levels)") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a value built outside construct_object
        raise YamlRefused(f"a value cannot be read ({shorten(str(exc), 80)})") from None
    finally:
        loader.dispose()


def describe(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: what was refused, or where the syntax broke."""
    if isinstance(exc, YamlRefused):
        return str(exc)
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"malformed YAML at {where}{problem[:200]}"
