"""Gin text read with gin's own parser: nothing registered, imported or evaluated.

The one reader of gin text outside gin's configuration itself: the model-directory check
(`core/checkpoints.py`, which names the binding that changed between two runs) and the
dataset writer (`data/synthetic.py`, which reads a config's dataset macros before any
configurable exists) both read configs through `parse`.
"""

import os


def parse(text: str, include_root: str = None, path: str = "<string>", _seen=frozenset()):
    """The bindings of a gin text, as gin's parser gives them.

    Args:
      text: gin text (a file's content, or `gin.operative_config_str()`).
      include_root: follow `include` statements, resolved relative to this folder (as
        `train.py` resolves them); None ignores them. Imports are always ignored.
      path: the text's file, named in errors.

    Returns:
      `(macros, bindings)`: `{"[scope/]NAME": value}` and `{"[scope/]selector.param": value}`,
      in order, a later binding replacing an earlier one. Values are gin's parsed values:
      Python literals, or objects with a `selector` (`@ref`, `@ref()`, `%MACRO`,
      `%gin.REQUIRED`); see `reference`.

    Raises:
      ValueError: an include that is missing or includes itself, naming the file.
    """
    import gin
    from gin import config_parser

    macros, bindings = {}, {}
    for statement in config_parser.ConfigParser(text, gin.config.ParserDelegate(skip_unknown=True)):
        if isinstance(statement, config_parser.IncludeStatement) and include_root:
            included = os.path.join(include_root, statement.filename)
            if included in _seen or included == path:
                raise ValueError(f"{included}: includes itself")
            if not os.path.exists(included):
                raise ValueError(f"{path}: include {statement.filename!r}: no such file in {include_root}")
            with open(included) as f:
                more_macros, more_bindings = parse(f.read(), include_root, included, _seen | {path})
            macros.update(more_macros)
            bindings.update(more_bindings)
        elif isinstance(statement, config_parser.BindingStatement):
            scope = f"{statement.scope}/" if statement.scope else ""
            if statement.arg_name:
                bindings[f"{scope}{statement.selector}.{statement.arg_name}"] = statement.value
            else:
                macros[f"{scope}{statement.selector}"] = statement.value
    return macros, bindings


def reference(value):
    """What a parsed value refers to: `("macro", NAME)` for `%NAME`, `("constant", NAME)` for
    `%gin.REQUIRED` and other constants, `("configurable", selector, called)` for `@ref` or
    `@ref()`; None for a plain value."""
    scoped = getattr(value, "scoped_selector", None) or getattr(value, "selector", None)
    if not scoped:
        return None
    if scoped.endswith("/gin.macro"):
        return ("macro", scoped[: -len("/gin.macro")])
    if scoped.endswith("/gin.constant"):
        return ("constant", scoped[: -len("/gin.constant")])
    return ("configurable", scoped, bool(getattr(value, "evaluate", False)))
