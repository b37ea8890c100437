"""The patient statement as a document the patient receives: self-contained HTML
rendered with Jinja (autoescaped) from the statement's JSON.

HTML only, like invoices (adapters/invoice_document.py): no PDF library is among
the project's dependencies; a browser prints this page to PDF as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Patient statement</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; width: 100%; margin: 1em 0; }
th, td { border-bottom: 1px solid #ccc; padding: .3em .5em; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.due { font-size: 1.3em; font-weight: bold; }
.missed { color: #b00; font-weight: bold; }
</style></head>
<body>
<h1>Patient statement</h1>
<p>{{ provider }}</p>
<p><strong>{{ s.patient_name }}</strong><br>
{% for line in s.address_lines %}{{ line }}<br>{% endfor %}</p>
<p>Statement date: {{ s.as_of }} · Account: {{ s.patient }}</p>
<p class="due">Amount due: {{ s.totals.amount_due }} {{ s.currency }}</p>
{% if s.totals.credit_balance != "0.00" %}
<p>Credit balance (to be refunded): {{ s.totals.credit_balance }} {{ s.currency }}</p>
{% endif %}
<h2>Visits</h2>
<table>
<tr><th>Date of service</th><th class="n">Charges</th><th class="n">Insurance paid</th>
<th class="n">Adjustments</th><th class="n">Your responsibility</th><th class="n">Payments</th>
<th class="n">Written off</th><th class="n">Balance</th></tr>
{% for e in s.encounters %}
<tr><td>{{ e.date_of_service }}</td><td class="n">{{ e.charges }}</td>
<td class="n">{{ e.insurance_paid }}</td><td class="n">{{ e.adjustments }}</td>
<td class="n">{{ e.patient_responsibility }}</td><td class="n">{{ e.payments }}</td>
<td class="n">{{ e.write_offs }}</td><td class="n">{{ e.balance }}</td></tr>
{% endfor %}
<tr><th>Total</th><th class="n">{{ s.totals.charges }}</th>
<th class="n">{{ s.totals.insurance_paid }}</th><th class="n">{{ s.totals.adjustments }}</th>
<th class="n">{{ s.totals.patient_responsibility }}</th><th class="n">{{ s.totals.payments }}</th>
<th class="n">{{ s.totals.write_offs }}</th><th class="n">{{ s.totals.amount_due }}</th></tr>
</table>
{% if s.payments %}
<h2>Payments received</h2>
<table>{% for p in s.payments %}
<tr><td>{{ p.received_on }}</td><td>{{ p.method }}</td><td class="n">{{ p.amount }}</td></tr>
{% endfor %}</table>
{% endif %}
{% if s.payment_plan %}
<h2>Payment plan</h2>
<table>
<tr><th>#</th><th>Due</th><th class="n">Amount</th><th class="n">Paid</th><th>Status</th></tr>
{% for i in s.payment_plan.schedule %}
<tr><td>{{ i.seq }}</td><td>{{ i.due_on }}</td><td class="n">{{ i.amount }}</td>
<td class="n">{{ i.paid }}</td>
<td{% if i.status == "missed" %} class="missed"{% endif %}>{{ i.status }}</td></tr>
{% endfor %}</table>
{% endif %}
</body></html>
"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_COMPILED = _ENV.from_string(_TEMPLATE)
_ADDRESS_ORDER = ("line1", "line2", "city", "state", "postal_code")


def render_statement_html(statement: Mapping[str, Any], provider: str) -> str:
    address = statement.get("address") or {}
    doc = {
        **statement,
        "address_lines": [str(address[k]) for k in _ADDRESS_ORDER if address.get(k)],
    }
    return _COMPILED.render(s=doc, provider=provider)
