"""What every typed option model of the project shares, in the bottom layer so that dedup/ (a kind's
options) and pipeline/ (the mix file) build on the same rules without dedup/ reaching up:

- `Strict`: unknown keys refused (a typo is an error, not a silently ignored option), and no
  `.inf` / `.nan` in a float field (a threshold of nan compares false with everything and
  silently keeps or drops all documents);
- `safe_name`: the rule for a name that becomes one folder under the output;
- `format_error`: a pydantic ValidationError as the lines a user reads, with the known keys and
  the closest one for an unknown key (`model_at` finds the model that holds a nested key).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # every name that becomes a folder, not only sources'
# A folder name: file systems allow 255 bytes per component; a shorter bound leaves room for the
# suffixes the pipeline adds (e.g. `<name>-search.yaml`).
MAX_NAME_LENGTH = 128


def safe_name(value: str, what: str = "name") -> str:
    """`value` if it can be one folder under the output: SOURCE_NAME (letters, digits, `_`, `.`,
    `-`, starting with a letter or digit, so never `.hidden` or `-flag`), no `..`, no `/`, at most
    MAX_NAME_LENGTH characters. A name such as `../../data` would otherwise write attribute files
    outside the output, over someone's inputs. ValueError naming `what` otherwise."""
    if not isinstance(value, str) or len(value) > MAX_NAME_LENGTH or not SOURCE_NAME.match(value) or ".." in value:
        shown = value if not isinstance(value, str) or len(value) <= 60 else value[:57] + "..."
        raise ValueError(
            f"{what} {shown!r} must match {SOURCE_NAME.pattern}, may not contain '..' and has at most "
            f"{MAX_NAME_LENGTH} characters (it becomes a folder name under the output)"
        )
    return value


class Strict(BaseModel):
    # allow_inf_nan=False: every float field refuses .inf / .nan (a threshold of nan compares false
    # with everything and silently keeps or drops all documents)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def model_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that holds the last key of `loc` (list indices skipped)."""
    cls: type[BaseModel] = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = cls.model_fields.get(part)
        if field is None:
            return None
        found: type[BaseModel] | None = None
        todo: list[Any] = [field.annotation]
        while todo and found is None:
            t = todo.pop()
            if isinstance(t, type) and issubclass(t, BaseModel):
                found = t
            else:
                todo.extend(get_args(t))
        if found is None:
            return None
        cls = found
    return cls


def error_lines(
    err: ValidationError, root: type[BaseModel], where: Callable[[tuple], str | None] | None = None
) -> list[str]:
    """One `  - LOC: MESSAGE; found VALUE` line per error. An unknown key names the closest known
    key of the model that holds it and all its keys; `where(loc)` may name a location better
    than its dotted path (the mix file names a source by its name, not its index)."""
    lines = []
    for e in err.errors():
        loc = (where(e["loc"]) if where else None) or ".".join(str(x) for x in e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
            model = model_at(root, e["loc"])
            if model is not None:
                known = [k for k in model.model_fields]
                close = difflib.get_close_matches(str(e["loc"][-1]), known, n=1)
                msg += f"; did you mean {close[0]!r}?" if close else ""
                msg += f" known keys: {', '.join(known)}"
        found = e.get("input")
        found_r = repr(found)  # shortened: a value may be a whole line of digits or a pasted document
        found_r = found_r[:77] + "..." if len(found_r) > 80 else found_r
        found_s = "" if isinstance(found, (dict, list)) else f"; found {found_r}"
        if e["type"] == "extra_forbidden":
            found_s = ""
        lines.append(f"  - {loc + ': ' if loc else ''}{msg}{found_s}")
    return lines


def format_error(where: str, err: ValidationError, root: type[BaseModel], what: str = "options") -> str:
    """`WHERE: invalid WHAT (N errors)` and one line per error (`error_lines`)."""
    n = err.error_count()
    return "\n".join([f"{where}: invalid {what} ({n} error{'s' if n > 1 else ''})", *error_lines(err, root)])
