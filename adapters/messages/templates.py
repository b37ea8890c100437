"""Reminder messages rendered with Jinja: one subject and one plain-text body per
kind (`reminder:-3`, `reminder:+7`… read the sign: before or after the due date).

Plain text, no autoescaping (not HTML); an unknown variable is an error, not a
blank, so a template typo fails the run instead of mailing a broken letter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2

_ENV = jinja2.Environment(
    autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
)

SUBJECT = (
    "{% if days < 0 %}Invoice {{ number }} is due on {{ due_date }}"
    "{% else %}Reminder: invoice {{ number }} is {{ days }} day{{ 's' if days != 1 }} overdue"
    "{% endif %}"
)

BODY = """Dear {{ customer_name }},

{% if days < 0 -%}
this is a friendly reminder that invoice {{ number }} of {{ issue_date }}
falls due on {{ due_date }}.
{%- else -%}
our records show that invoice {{ number }} of {{ issue_date }},
due on {{ due_date }}, is still unpaid.
{%- endif %}

Amount due: {{ amount_due }} {{ currency }}
{% if payment_instructions %}
{{ payment_instructions }}
{% endif %}
If you have already paid, please disregard this message.

{{ sender }}
"""

_SUBJECT = _ENV.from_string(SUBJECT)
_BODY = _ENV.from_string(BODY)


def render(kind: str, context: Mapping[str, Any]) -> tuple[str, str]:
    """(subject, body) of a reminder message (billing.postgres.dunning.Render)."""
    return _SUBJECT.render(**context), _BODY.render(**context)
