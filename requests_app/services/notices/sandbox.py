"""The subset of the Django template language a Privacy Manager may write emails in.

An edited template is parsed by Django's own engine and then checked node by node
(never by text patterns, which a `%` in a tag's arguments once slipped past):

- only the nodes of the allowed tags (if, for, with, autoescape, block, extends of
  emails/base.html only, comment, now, firstof, spaceless, load, translate,
  blocktranslate); include, extends of anything else, debug, url, csrf_token,
  cycle, regroup, templatetag, widthratio, lorem, verbatim, filter, and `load` of
  any library but i18n are refused (and any tag or filter of another library
  would be refused where it is used);
- only the allowed filters (the builtin functions themselves, not names: a
  library's filter of the same name is refused); never `safe`, which would put a
  consumer's text unescaped into the HTML;
- every variable starts from a name the notices' context holds (the request, the
  identity, the links, the code...) or one the template binds itself (a loop
  variable, a `with`, an `as`).
"""

from django.core.exceptions import ValidationError
from django.template import defaultfilters, defaulttags, loader_tags
from django.template.base import (
    FilterExpression,
    NodeList,
    TextNode,
    TokenType,
    Variable,
    VariableNode,
)
from django.templatetags import i18n
from django.utils.translation import gettext as _

# What the notices' context holds (templates.notice_context and the extras the
# notices are queued with).
CONTEXT_NAMES = frozenset({
    "request", "identity", "status_url", "verify_url", "complaint_text", "site_url",
    "after_appeal_text",
    "download_days", "download_max", "code", "code_url", "download_url", "expires_at",
    "agent_name", "references", "old_type", "also_filed", "by_letter", "code_valid_for",
})
NODES = {
    TextNode: None, VariableNode: None, defaulttags.IfNode: "if", defaulttags.ForNode: "for",
    defaulttags.WithNode: "with", defaulttags.AutoEscapeControlNode: "autoescape",
    defaulttags.CommentNode: "comment", defaulttags.NowNode: "now",
    defaulttags.FirstOfNode: "firstof", defaulttags.SpacelessNode: "spaceless",
    defaulttags.LoadNode: "load", loader_tags.BlockNode: "block",
    loader_tags.ExtendsNode: "extends", i18n.TranslateNode: "translate",
    i18n.BlockTranslateNode: "blocktranslate",
}
FILTERS = frozenset(defaultfilters.register.filters[name] for name in (
    "add", "capfirst", "center", "cut", "date", "default", "default_if_none",
    "divisibleby", "escape", "first", "floatformat", "force_escape", "join", "last",
    "length", "linebreaks", "linebreaksbr", "ljust", "lower", "pluralize", "rjust",
    "slice", "striptags", "time", "timesince", "timeuntil", "title", "truncatechars",
    "truncatewords", "upper", "urlencode", "wordwrap", "yesno"))
BASE = "emails/base.html"


def check(nodelist: NodeList, label: str) -> None:
    """Raise a ValidationError naming the part (`label`) and the first problem."""
    nodes = list(_walk(nodelist))
    for node in nodes:
        if type(node) not in NODES:
            tag = getattr(node, "token", None)
            tag = tag.contents.split()[0] if tag is not None and tag.contents else "?"
            raise ValidationError(_("%(part)s: the tag “%(tag)s” cannot be used in an email.")
                                  % {"part": label, "tag": tag})
        if isinstance(node, loader_tags.ExtendsNode) and not (
                node.parent_name.var == BASE and not node.parent_name.filters):
            raise ValidationError(_("%(part)s: an email can only extend “emails/base.html”.")
                                  % {"part": label})
        if isinstance(node, defaulttags.LoadNode) and node.token.split_contents() != [
                "load", "i18n"]:
            raise ValidationError(_("%(part)s: only {%% load i18n %%} can be used.")
                                  % {"part": label})
    bound = {"forloop", "block"} | {name for node in nodes for name in _binds(node)}
    for node in nodes:
        for expression in _expressions(vars(node)):
            _check_expression(expression, CONTEXT_NAMES | bound, label)
        if isinstance(node, i18n.BlockTranslateNode):
            for token in (node.singular or []) + (node.plural or []):
                if token.token_type == TokenType.VAR:
                    _check_name(token.contents.split(".")[0], CONTEXT_NAMES | bound, label)


def _walk(nodelist):
    for node in nodelist:
        yield node
        if isinstance(node, defaulttags.IfNode):
            children = [nodes for _c, nodes in node.conditions_nodelists]
        else:
            children = [getattr(node, attr, None) for attr in node.child_nodelists]
        for child in children:
            if child:
                yield from _walk(child)


def _binds(node) -> set[str]:
    """The names a node puts into the context for what it encloses."""
    names = set(getattr(node, "loopvars", None) or ())
    if isinstance(node, defaulttags.WithNode):
        names |= set(node.extra_context)
    if isinstance(node, i18n.BlockTranslateNode):
        names |= set(node.extra_context) | ({node.countervar} if node.countervar else set())
    if getattr(node, "asvar", None):
        names.add(node.asvar)
    return names


def _expressions(value, depth=0):
    """Every FilterExpression in a node's attributes (its conditions, sequences,
    extra context), never descending into child nodes (walked apart)."""
    if depth > 40 or isinstance(value, (str, bytes, int, float, NodeList, TextNode)):
        return
    if isinstance(value, FilterExpression):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _expressions(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _expressions(item, depth + 1)
    elif type(value).__module__ in ("django.template.smartif", "django.template.defaulttags"):
        # The condition tree of an if: operators (first, second) and literals (value).
        for attr in ("first", "second", "value"):
            if hasattr(value, attr):
                yield from _expressions(getattr(value, attr), depth + 1)


def _check_expression(expression: FilterExpression, names: set, label: str) -> None:
    _check_variable(expression.var, names, label)
    for func, args in expression.filters:
        if func not in FILTERS:
            raise ValidationError(_("%(part)s: the filter “%(filter)s” cannot be used in an "
                                    "email.") % {"part": label,
                                                 "filter": getattr(func, "__name__", "?")})
        for _is_variable, arg in args:
            _check_variable(arg, names, label)


def _check_variable(variable, names: set, label: str) -> None:
    if isinstance(variable, Variable) and variable.lookups:
        _check_name(variable.lookups[0], names, label)


def _check_name(name: str, names: set, label: str) -> None:
    if name not in names:
        raise ValidationError(_("%(part)s: “%(name)s” is not something an email can show.")
                              % {"part": label, "name": name})
