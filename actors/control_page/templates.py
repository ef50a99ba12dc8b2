# ruff: noqa: E501 - HTML reads better with a tag and its attributes on one line.
"""The control page's HTML, CSS and script, kept in the package as text (nothing to fetch,
nothing to miss from a wheel). Jinja2 with autoescape on for every template: all a
template prints is escaped unless it is the output of another template of ours."""

from __future__ import annotations

from typing import Final

import jinja2

# Each live section's element id; the page, `/fragments` and `/events` use the same names.
SECTIONS: Final = ("sessions", "tasks", "wiring", "usage")

_LAYOUT = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}hutch{% endblock %}</title>
<link rel="stylesheet" href="/static/page.css">
{% block head %}{% endblock %}
</head>
<body>
{% block body %}{% endblock %}
</body>
</html>
"""

_LOGIN = """{% extends "layout.html" %}
{% block title %}hutch: log in{% endblock %}
{% block body %}
<main class="login">
<h1>hutch</h1>
<p>The host printed this page's address with its token when it started
(<code>control page: http://127.0.0.1:PORT/?token=...</code>). Open that address, or paste the token here.</p>
{% if error %}<p class="flash failed" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="/login">
<label>token <input type="password" name="token" autocomplete="off" autofocus required maxlength="256"></label>
<button type="submit">log in</button>
</form>
</main>
{% endblock %}
"""

_PAGE = """{% extends "layout.html" %}
{% block head %}<script src="/static/page.js" defer></script>{% endblock %}
{% block body %}
<header>
<h1>hutch</h1>
<span class="note">live; last update <span id="updated">{{ rendered }}</span></span>
<form method="post" action="/logout" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}"><button type="submit">log out</button>
</form>
</header>
{% if flash %}<p id="flash" class="flash {{ 'ok' if flash.ok else 'failed' }}" role="status">{{ flash.message }}</p>{% endif %}
<main>
<section><h2>Sessions</h2><div id="sessions">{{ fragments.sessions }}</div></section>
<section><h2>Scheduled tasks</h2><div id="tasks">{{ fragments.tasks }}</div></section>
<section><h2>Wiring and pending senders</h2><div id="wiring">{{ fragments.wiring }}</div></section>
<section><h2>Token use</h2><div id="usage">{{ fragments.usage }}</div></section>
</main>
{% endblock %}
"""

_SESSIONS = """{% if snapshot.error %}<p class="flash failed">{{ snapshot.error }}</p>{% endif %}
{% if not snapshot.sessions %}<p class="empty">No live sessions yet: one starts with a chat's first message.</p>
{% else %}
<table>
<thead><tr><th>session</th><th>agent group</th><th>chat</th><th>host</th><th>agent</th><th>heartbeat</th>
<th>pending</th><th>last active</th></tr></thead>
<tbody>
{% for s in snapshot.sessions %}
<tr class="session" data-session="{{ s.id }}">
<td><code title="{{ s.id }}">{{ s.id[:8] }}</code></td>
<td>{{ s.group }}</td>
<td>{{ s.chat }}</td>
<td>{% if s.live is none %}-{% elif s.live %}live{% else %}not loaded{% endif %}</td>
<td class="{{ 'running' if s.agent_running else 'stopped' }}">{{ 'running' if s.agent_running else 'stopped' }}</td>
<td>{{ s.heartbeat_age }}</td>
<td>{{ s.pending }}{% if s.pending > s.due %} ({{ s.pending - s.due }} later){% endif %}</td>
<td>{{ s.last_active }}</td>
</tr>
{% if s.error %}<tr><td colspan="8" class="flash failed">{{ s.error }}</td></tr>{% endif %}
{% endfor %}
</tbody>
</table>
{% if snapshot.sessions_total > snapshot.sessions|length %}
<p class="note">The {{ snapshot.sessions|length }} most recently active of {{ snapshot.sessions_total }} active sessions.</p>
{% endif %}
<h3>Recent messages</h3>
{% for s in snapshot.sessions %}
<details id="messages-{{ s.id }}" class="messages">
<summary>{{ s.group }} &middot; {{ s.chat }} &middot; <code>{{ s.id[:8] }}</code> ({{ s.messages|length }})</summary>
{% if s.messages %}
<ol>
{% for m in s.messages %}
<li class="{{ m.direction }}"><span class="meta">#{{ m.seq }} {{ m.when }} &middot; {{ m.kind }}{% if m.who %} &middot; {{ m.who }}{% endif %}{% if m.status %} &middot; {{ m.status }}{% endif %}</span>
<span class="text">{{ m.text }}</span></li>
{% endfor %}
</ol>
{% else %}<p class="empty">No messages.</p>{% endif %}
</details>
{% endfor %}
{% endif %}
"""

_TASKS = """{% if not snapshot.tasks %}<p class="empty">No scheduled tasks.</p>
{% else %}
<table>
<thead><tr><th>task</th><th>agent group</th><th>session</th><th>prompt</th><th>repeats</th><th>next run</th>
<th>status</th><th></th></tr></thead>
<tbody>
{% for t in snapshot.tasks %}
<tr class="task" data-task="{{ t.series_id }}">
<td><code>{{ t.series_id }}</code></td>
<td>{{ t.group }}</td>
<td><code title="{{ t.session_id }}">{{ t.session_id[:8] }}</code></td>
<td>{{ t.prompt }}</td>
<td>{{ t.recurrence or 'once' }}</td>
<td>{{ t.next_run if t.status in ('pending', 'paused') else '-' }}</td>
<td class="status">{{ t.status }}</td>
<td>
<form method="post" action="/tasks" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="session" value="{{ t.session_id }}">
<input type="hidden" name="task" value="{{ t.series_id }}">
{% for verb in ('pause', 'resume', 'cancel') %}{% if t.can(verb) %}<button type="submit" name="verb" value="{{ verb }}">{{ verb }}</button>{% endif %}{% endfor %}
</form>
</td>
</tr>
{% endfor %}
</tbody>
</table>
{% endif %}
"""

_WIRING = """<h3>Pending senders</h3>
{% if not snapshot.senders %}<p class="empty">Nobody is waiting to be let in.</p>
{% else %}
<table>
<thead><tr><th>code</th><th>chat</th><th>user id</th><th>name</th><th>asked</th><th></th></tr></thead>
<tbody>
{% for p in snapshot.senders %}
<tr class="sender" data-code="{{ p.code }}">
<td><code>{{ p.code }}</code></td><td>{{ p.chat }}</td><td>{{ p.user_id }}</td><td>{{ p.user_name }}</td><td>{{ p.asked }}</td>
<td>
<form method="post" action="/senders" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="code" value="{{ p.code }}">
<button type="submit" name="decision" value="approve">approve</button>
<button type="submit" name="decision" value="refuse">refuse</button>
</form>
</td>
</tr>
{% endfor %}
</tbody>
</table>
{% endif %}
<h3>Wiring</h3>
{% if not snapshot.wirings %}<p class="empty">No chat is wired to an agent group.</p>
{% else %}
<table>
<thead><tr><th>chat</th><th>unknown senders</th><th>agent group</th><th>sessions</th><th>trigger</th>
<th>untriggered</th><th>priority</th></tr></thead>
<tbody>
{% for w in snapshot.wirings %}
<tr><td>{{ w.chat }}</td><td>{{ w.unknown_senders }}</td><td>{{ w.group }}</td><td>{{ w.session_mode }}</td>
<td><code>{{ w.trigger_rule }}</code></td><td>{{ w.untriggered }}</td><td>{{ w.priority }}</td></tr>
{% endfor %}
</tbody>
</table>
{% endif %}
"""

_USAGE = """{% if snapshot.usage_note %}<p class="note">{{ snapshot.usage_note }}</p>{% endif %}
{% if chart.empty %}<p class="empty">No tokens used from {{ chart.first_day }} to {{ chart.last_day }}.</p>
{% else %}
<svg class="chart" viewBox="0 0 {{ chart.width }} {{ chart.height }}" width="{{ chart.width }}" height="{{ chart.height }}"
 role="img" aria-label="tokens per day and agent group, {{ chart.first_day }} to {{ chart.last_day }}">
{% for t in chart.y_ticks %}<line x1="{{ chart.plot_left }}" x2="{{ chart.plot_right }}" y1="{{ t.at }}" y2="{{ t.at }}" stroke="#ccc" stroke-width="1"/>
<text x="{{ chart.plot_left - 6 }}" y="{{ t.at + 4 }}" text-anchor="end" font-size="11" fill="#444">{{ t.label }}</text>
{% endfor %}
{% for b in chart.bars %}<rect x="{{ b.x }}" y="{{ b.y }}" width="{{ b.width }}" height="{{ b.height }}" fill="{{ b.color }}"><title>{{ b.title }}</title></rect>
{% endfor %}
{% for t in chart.x_ticks %}<text x="{{ t.at }}" y="{{ chart.height - 8 }}" text-anchor="middle" font-size="11" fill="#444">{{ t.label }}</text>
{% endfor %}
</svg>
<table class="usage">
<thead><tr><th></th><th>agent group</th><th>requests</th><th>input</th><th>output</th><th>cache read</th><th>cache write</th>
<th>cost</th></tr></thead>
<tbody>
{% for g in chart.groups %}
<tr><td><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" fill="{{ g.color }}"/></svg></td>
<td>{{ g.name }}</td><td>{{ '{:,}'.format(g.requests) }}</td><td>{{ '{:,}'.format(g.input_tokens) }}</td><td>{{ '{:,}'.format(g.output_tokens) }}</td>
<td>{{ '{:,}'.format(g.cache_read_tokens) }}</td><td>{{ '{:,}'.format(g.cache_write_tokens) }}</td><td>{{ g.cost }}</td></tr>
{% endfor %}
</tbody>
</table>
<p class="note">{{ chart.first_day }} to {{ chart.last_day }} (UTC days).</p>
{% endif %}
"""

STYLE: Final = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5em 2em; color: #222; }
header { display: flex; gap: 1em; align-items: baseline; border-bottom: 1px solid #ccc; }
header h1 { margin: .4em 0; }
h2 { margin-top: 1.4em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: .4em 0; }
th, td { text-align: left; padding: .2em .6em; border-bottom: 1px solid #eee; vertical-align: top; }
td { max-width: 40em; overflow-wrap: anywhere; }
code { font-size: 12px; }
.inline { display: inline; }
.note, .empty, .meta { color: #666; }
.flash { padding: .4em .8em; border-radius: 3px; }
.flash.ok { background: #e6f4ea; }
.flash.failed { background: #fce8e6; }
.running { color: #0a7d32; }
.stopped { color: #777; }
details.messages { margin: .3em 0; }
details.messages ol { list-style: none; padding-left: 1em; }
details.messages li { margin: .3em 0; overflow-wrap: anywhere; }
details.messages .text { white-space: pre-wrap; }
details.messages li.out .text { color: #0b4f8a; }
.meta { display: block; font-size: 12px; }
main.login { max-width: 40em; }
"""

# Live updates: server-sent events, and polling where they are refused (too many pages
# open) or missing. An open <details> stays open across updates.
SCRIPT: Final = """"use strict";
(() => {
  const apply = (fragments) => {
    for (const [id, html] of Object.entries(fragments)) {
      const element = document.getElementById(id);
      if (!element) continue;
      const open = new Set([...element.querySelectorAll("details[open]")].map((d) => d.id));
      element.innerHTML = html;
      for (const details of element.querySelectorAll("details")) {
        if (open.has(details.id)) details.open = true;
      }
    }
    const stamp = document.getElementById("updated");
    if (stamp) stamp.textContent = new Date().toLocaleTimeString();
  };
  const poll = () => {
    fetch("/fragments", { credentials: "same-origin", cache: "no-store" })
      .then((response) => {
        if (response.status === 401) {
          window.location.assign("/login");
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then((fragments) => fragments && apply(fragments))
      .catch(() => {})
      .finally(() => window.setTimeout(poll, 3000));
  };
  if (!window.EventSource) {
    poll();
    return;
  }
  const source = new EventSource("/events");
  source.addEventListener("update", (event) => apply(JSON.parse(event.data)));
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) poll();
  };
})();
"""

ENVIRONMENT: Final = jinja2.Environment(
    loader=jinja2.DictLoader(
        {
            "layout.html": _LAYOUT,
            "login.html": _LOGIN,
            "page.html": _PAGE,
            "sessions.html": _SESSIONS,
            "tasks.html": _TASKS,
            "wiring.html": _WIRING,
            "usage.html": _USAGE,
        }
    ),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
