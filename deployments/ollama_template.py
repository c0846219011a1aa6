"""Ollama's prompt templates (Go templates) as Jinja chat templates, for engines that take Jinja.

Ollama's classic templates describe one turn with `.System`, `.Prompt` and `.Response`, and a
conversation is the template repeated per turn, the last one cut where `.Response` begins (that is
where the model writes). This covers those templates: `{{ .System }}`, `{{ .Prompt }}`,
`{{ .Response }}`, `{{ if .X }}`, `{{ else }}`, `{{ end }}`, with `{{-`/`-}}` trimming. Templates that
use anything else (`.Messages`, `range`, tools, functions) are not converted.
"""

from __future__ import annotations

import re

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)
_VARIABLES = {".System": "system", ".Prompt": "prompt", ".Response": "response"}


class UntranslatableTemplate(ValueError):
    """The template uses a construct this converter does not translate (named in the message)."""


def _translate(go: str) -> str:
    """Go template text → Jinja text (block tags keep their whitespace, as Go's do)."""
    out, position = [], 0
    for match in _ACTION.finditer(go):
        out.append(go[position:match.start()].replace("{#", "{{ '{#' }}"))
        position = match.end()
        left, body, right = match.group(1), match.group(2), match.group(3)
        open_block, close_block = f"{{%{left or '+'} ", f" {right or '+'}%}}"
        if body in _VARIABLES:
            out.append(f"{{{{{left} {_VARIABLES[body]} {right}}}}}")
        elif (condition := re.fullmatch(r"if\s+(\.System|\.Prompt|\.Response)", body)):
            out.append(f"{open_block}if {_VARIABLES[condition.group(1)]}{close_block}")
        elif body == "else":
            out.append(f"{open_block}else{close_block}")
        elif body == "end":
            out.append(f"{open_block}endif{close_block}")
        else:
            raise UntranslatableTemplate(f"`{{{{ {body[:80]} }}}}`")
    out.append(go[position:])
    return "".join(out)


def to_jinja(go_template: str) -> str:
    """A Jinja chat template over `messages` that renders as Ollama renders `go_template` (UntranslatableTemplate
    naming the first construct it cannot translate)."""
    head, separator, tail = go_template.partition("{{ .Response }}")
    if not separator:
        head, separator, tail = go_template.partition("{{.Response}}")
    before, after = _translate(head), _translate(tail)
    # One turn per assistant message; the last (the empty one the engine appends) stops at the response.
    return (
        "{%- set ns = namespace(system='', prompt='') -%}"
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}{%- set ns.system = message['content'] -%}"
        "{%- elif message['role'] == 'user' -%}{%- set ns.prompt = message['content'] -%}"
        "{%- elif message['role'] == 'assistant' -%}"
        "{%- set system = ns.system -%}{%- set prompt = ns.prompt -%}{%- set response = message['content'] -%}"
        f"{before}{{{{ response }}}}{{%+ if not loop.last +%}}{after}{{%+ endif +%}}"
        "{%- set ns.system = '' -%}{%- set ns.prompt = '' -%}"
        "{%- endif -%}"
        "{%- endfor -%}"
    )
