import HTTPTypes
import Hummingbird
import NIOCore

/// The dashboard's stylesheet and script, compiled into the binary: no CDN, no web fonts.
enum Assets {
    static func response(_ body: String, type: String) -> Response {
        Response(
            status: .ok,
            headers: [
                .contentType: "\(type); charset=utf-8", .cacheControl: "no-cache",
                HTTPField.Name("X-Content-Type-Options")!: "nosniff",
            ],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }

    static let css = #"""
        :root { --fg:#1b1f24; --muted:#57606a; --bg:#f6f8fa; --card:#fff; --line:#d0d7de; --accent:#0b5cd5;
          --danger:#b42318; --ok:#1a7f37; --warn:#9a6700; color-scheme: light dark; }
        @media (prefers-color-scheme: dark) { :root { --fg:#e6edf3; --muted:#9da7b3; --bg:#0d1117; --card:#161b22;
          --line:#30363d; --accent:#58a6ff; --danger:#ff7b72; --ok:#3fb950; --warn:#d29922; } }
        * { box-sizing: border-box; }
        body { margin:0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg); background:var(--bg); }
        code, pre, textarea, .ssh-command { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
        a { color: var(--accent); }
        .skip { position:absolute; left:-999px; } .skip:focus { left:8px; top:8px; background:var(--card); padding:4px 8px; z-index:2; }
        .sr-only { position:absolute; width:1px; height:1px; overflow:hidden; clip:rect(0 0 0 0); white-space:nowrap; }
        header.top { display:flex; flex-wrap:wrap; gap:.5rem 1.5rem; align-items:center; padding:.75rem 1rem; background:var(--card); border-bottom:1px solid var(--line); }
        .brand { font-weight:700; text-decoration:none; color:var(--fg); font-size:1.15rem; }
        nav { display:flex; flex-wrap:wrap; gap:.25rem 1rem; align-items:center; }
        nav a[aria-current="page"] { font-weight:700; text-decoration:none; }
        main { max-width: 64rem; margin: 0 auto; padding: 1rem; }
        h1 { font-size:1.5rem; margin:.5rem 0 1rem; } h2 { font-size:1.15rem; margin:1.5rem 0 .5rem; }
        .heading { display:flex; flex-wrap:wrap; gap:.5rem 1rem; align-items:center; justify-content:space-between; }
        .card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:1rem 1.25rem; }
        .narrow { max-width: 28rem; margin: 2rem auto; }
        .field { display:flex; flex-direction:column; gap:.25rem; margin:.5rem 0; flex:1 1 12rem; }
        .field.small { flex:0 1 9rem; }
        .field.check { flex-direction:row; align-items:center; gap:.5rem; }
        .row { display:flex; flex-wrap:wrap; gap:0 1rem; align-items:flex-start; }
        .stack > * + * { margin-top:.5rem; }
        label { font-weight:600; } .hint { color:var(--muted); font-weight:400; font-size:.9em; }
        input, select, textarea { font:inherit; padding:.5rem; border:1px solid var(--line); border-radius:6px; background:var(--card); color:var(--fg); width:100%; }
        input[type=checkbox] { width:auto; min-width:1.1rem; min-height:1.1rem; }
        [aria-invalid="true"] { border-color: var(--danger); outline: 1px solid var(--danger); }
        fieldset { border:1px solid var(--line); border-radius:8px; margin:1rem 0; padding:.5rem 1rem 1rem; }
        legend { font-weight:700; padding:0 .25rem; }
        button, .button { font:inherit; display:inline-block; padding:.5rem 1rem; border-radius:6px; border:1px solid var(--line); background:var(--card); color:var(--fg); cursor:pointer; text-decoration:none; min-height:2.5rem; }
        button.primary, .button.primary { background:var(--accent); border-color:var(--accent); color:#fff; }
        button.danger { color:var(--danger); border-color:var(--danger); }
        button.link { border:0; background:none; color:var(--accent); padding:0; min-height:auto; text-decoration:underline; }
        :focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
        form.inline { display:inline; }
        .actions { margin-top:1.25rem; }
        .field-error, .form-error, .op-error { color:var(--danger); margin:.25rem 0; }
        .notice { background:var(--card); border-left:4px solid var(--ok); padding:.5rem .75rem; }
        .state { display:inline-block; padding:.1rem .5rem; border-radius:999px; border:1px solid currentColor; font-size:.85em; font-weight:600; }
        .state-ready, .state-succeeded, .state-cloned { color:var(--ok); }
        .state-failed, .state-destroyed { color:var(--danger); }
        .state-requested, .state-provisioning, .state-running, .state-cloning, .state-pending { color:var(--warn); }
        .state-stopped, .state-skipped { color:var(--muted); }
        table { width:100%; border-collapse:collapse; background:var(--card); }
        th, td { text-align:left; padding:.5rem; border-bottom:1px solid var(--line); vertical-align:top; }
        code.id { color:var(--muted); font-size:.8em; overflow-wrap:anywhere; }
        dl.facts { display:grid; grid-template-columns: repeat(auto-fit, minmax(12rem, 1fr)); gap:.5rem 1rem; margin:0; }
        dl.facts dt { color:var(--muted); font-size:.85em; } dl.facts dd { margin:0; overflow-wrap:anywhere; }
        figure.stats-chart { margin:.75rem 0 0; } figure.stats-chart svg { width:100%; height:8rem; display:block; border:1px solid var(--line); }
        svg .axis { stroke:var(--line); } svg .series-cpu, .key-cpu { stroke:#2563eb; color:#2563eb; stroke-width:2; }
        svg .series-memory, .key-memory { stroke:#16a34a; color:#16a34a; stroke-width:2; }
        ol.timeline { list-style:none; padding:0; margin:0; border-left:2px solid var(--line); }
        ol.timeline > li { margin:0 0 .75rem; padding-left:1rem; position:relative; }
        ol.timeline > li::before { content:""; position:absolute; left:-7px; top:.45rem; width:12px; height:12px; border-radius:50%; background:var(--line); }
        li.op-succeeded::before { background:var(--ok) !important; } li.op-failed::before { background:var(--danger) !important; }
        li.op-running::before { background:var(--warn) !important; }
        .what { font-weight:600; } .op-status { margin-left:.5rem; }
        pre.output { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:.5rem; max-height:20rem; overflow:auto; white-space:pre-wrap; overflow-wrap:anywhere; margin:.25rem 0; }
        ul.sessions { list-style:none; padding:0; } ul.sessions li { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:.75rem; margin:.5rem 0; }
        ul.sessions li.new { border-color: var(--ok); }
        ul.entries { list-style:none; padding:0; margin:0; } #network-form { margin-top:.75rem; }
        .cmd { display:flex; flex-wrap:wrap; gap:.5rem; align-items:center; } .cmd code { overflow-wrap:anywhere; flex:1 1 16rem; }
        @media (max-width: 40rem) {
          table.devboxes thead, table.repos thead { display:none; }
          table.devboxes tr, table.repos tr { display:block; border-bottom:1px solid var(--line); padding:.25rem 0; }
          table.devboxes td, table.repos td { display:flex; gap:.5rem; border:0; padding:.2rem .5rem; }
          table.devboxes td::before, table.repos td::before { content: attr(data-label); color:var(--muted); min-width:7rem; flex:none; }
          table.devboxes td > *, table.repos td > * { min-width:0; overflow-wrap:anywhere; }
          header.top { padding:.5rem .75rem; } main { padding:.75rem; }
        }
        """#

    static let js = #"""
        // devbox dashboard: live state by polling our own JSON endpoints, copy buttons, form rows.
        (function () {
          'use strict';
          var finished = ['ready', 'failed', 'destroyed', 'stopped'];
          function poll(url, ms, onData) {
            function tick() {
              fetch(url, { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
                .then(function (r) {
                  // signed out elsewhere, or the devbox is gone: stop and show the page the server gives
                  if (r.status === 401) { location.href = '/login'; return undefined; }
                  if (r.status === 404) { location.reload(); return undefined; }
                  return r.ok ? r.json() : null;
                })
                .then(function (data) {
                  if (data === undefined) return;
                  if (data === null || onData(data) !== false) setTimeout(tick, ms);
                })
                .catch(function () { setTimeout(tick, ms); });
            }
            setTimeout(tick, ms);
          }
          function setState(el, state) {
            if (el && el.textContent !== state) { el.textContent = state; el.className = 'state state-' + state; }
          }

          var list = document.querySelector('[data-live-list]');
          if (list) {
            poll('/dashboard/api/devboxes', 2000, function (data) {
              for (var i = 0; i < data.devboxes.length; i++) {
                var d = data.devboxes[i];
                var row = list.querySelector('tr[data-devbox="' + d.id + '"]');
                if (!row) { if (d.state !== 'destroyed') { location.reload(); return false; } continue; }
                setState(row.querySelector('[data-state]'), d.state);
              }
            });
          }

          var box = document.querySelector('[data-live-devbox]');
          if (box) {
            var id = box.getAttribute('data-devbox-id');
            var rendered = box.getAttribute('data-state-at-render');
            poll('/dashboard/api/devboxes/' + encodeURIComponent(id), 1500, function (data) {
              setState(document.getElementById('devbox-state'), data.devbox.state);
              data.operations.forEach(function (op) {
                var li = box.querySelector('li[data-op="' + op.name + '"]');
                if (!li) return;
                li.className = 'op op-' + op.status;
                li.querySelector('[data-op-status]').textContent = op.status;
                var out = li.querySelector('[data-op-output]');
                var tail = op.output.length > 8192 ? op.output.slice(-8192) : op.output;
                if (out.textContent !== tail) {
                  out.textContent = tail;
                  out.scrollTop = out.scrollHeight;
                  if (tail) li.querySelector('details').open = true;
                }
                var err = li.querySelector('[data-op-error]');
                if (op.error) { err.textContent = op.error; err.hidden = false; }
              });
              (data.devbox.repositories || []).forEach(function (r, i) {
                var tr = box.querySelector('tr[data-repo="' + i + '"]');
                if (!tr) return;
                setState(tr.querySelector('[data-repo-status]'), r.status);
                tr.querySelector('[data-repo-commit]').textContent = r.commit ? r.commit.slice(0, 12) : '—';
                tr.querySelector('[data-repo-error]').textContent = r.error || '';
              });
              if (data.devbox.state !== rendered && finished.indexOf(data.devbox.state) >= 0) {
                // The page's actions (sessions, destroy) depend on the state: show the settled page.
                location.reload();
                return false;
              }
            });
          }

          // Resources: the box's usage now and a chart of the last 10 minutes (issue 24).
          var res = document.querySelector('[data-stats-devbox]');
          if (res) {
            var sid = res.getAttribute('data-stats-devbox');
            var samples = [];
            var bytes = function (n) {
              if (n === null || n === undefined) return '—';
              var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0;
              while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
              return (i === 0 ? n : n.toFixed(1)) + ' ' + u[i];
            };
            var show = function (name, text) {
              var el = res.querySelector('[data-stat="' + name + '"]');
              if (el && el.textContent !== text) el.textContent = text;
            };
            var draw = function () {
              var cpu = [], mem = [], n = samples.length;
              for (var i = 1; i < n; i++) {
                var a = samples[i - 1], b = samples[i];
                var dt = (Date.parse(b.sampled_at) - Date.parse(a.sampled_at)) / 1000;
                var pct = (a.cpu_seconds !== null && b.cpu_seconds !== null && dt > 0) ? Math.max(0, (b.cpu_seconds - a.cpu_seconds) / dt * 100) : 0;
                cpu.push(pct);
                mem.push(b.memory_bytes !== null && b.memory_limit_bytes ? b.memory_bytes / b.memory_limit_bytes * 100 : 0);
              }
              var top = Math.max(100, Math.max.apply(null, cpu.concat([0])));
              var line = function (values, scale) {
                var step = 600 / 119;
                var x0 = 600 - (values.length - 1) * step;
                return values.map(function (v, i) {
                  return (x0 + i * step).toFixed(1) + ',' + (119 - Math.min(v, scale) / scale * 115).toFixed(1);
                }).join(' ');
              };
              res.querySelector('[data-series="cpu"]').setAttribute('points', line(cpu, top));
              res.querySelector('[data-series="memory"]').setAttribute('points', line(mem, 100));
              show('samples', String(n));
              if (n >= 2) show('cpu', cpu[cpu.length - 1].toFixed(1) + ' %');
            };
            var sample = function () {
              fetch('/dashboard/api/devboxes/' + encodeURIComponent(sid) + '/stats',
                    { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
                .then(function (r) { return r.ok ? r.json() : null; })
                .then(function (s) {
                  if (s) {
                    samples.push(s);
                    if (samples.length > 121) samples.shift();
                    if (!s.running) show('cpu', 'not running');
                    else if (samples.length < 2) show('cpu', s.cpu_seconds.toFixed(2) + ' s in total');
                    show('memory', s.memory_bytes === null ? '—' : bytes(s.memory_bytes) +
                         (s.memory_peak_bytes !== null ? ' (peak ' + bytes(s.memory_peak_bytes) + ')' : '') +
                         (s.memory_limit_bytes ? ' of ' + bytes(s.memory_limit_bytes) : ''));
                    show('pids', s.pids === null ? '—' : String(s.pids));
                    show('disk', bytes(s.disk_used_bytes) + (s.disk_used_complete ? '' : ' or more'));
                    show('network', s.network_in_bytes === null ? '—' : bytes(s.network_in_bytes) + ' / ' + bytes(s.network_out_bytes));
                    draw();
                  }
                  setTimeout(sample, 5000);
                })
                .catch(function () { setTimeout(sample, 5000); });
            };
            sample();
          }

          document.addEventListener('click', function (e) {
            var b = e.target.closest('[data-copy]');
            if (b) {
              var el = document.getElementById(b.getAttribute('data-copy'));
              var text = el ? el.textContent : '';
              var done = function () { b.textContent = 'Copied'; setTimeout(function () { b.textContent = 'Copy'; }, 1500); };
              if (navigator.clipboard && window.isSecureContext) {
                navigator.clipboard.writeText(text).then(done, function () { select(el); });
              } else { select(el); }
              return;
            }
            var add = e.target.closest('[data-add-row]');
            if (add) {
              var tpl = document.getElementById(add.getAttribute('data-add-row'));
              var target = document.getElementById(add.getAttribute('data-target'));
              var n = target.children.length;
              var html = tpl.innerHTML.replace(/__i__/g, String(n));
              var holder = document.createElement('div');
              holder.innerHTML = html;
              var row = holder.firstElementChild;
              target.appendChild(row);
              var first = row.querySelector('input');
              if (first) first.focus();
            }
          });
          function select(el) {
            if (!el) return;
            var r = document.createRange(); r.selectNodeContents(el);
            var s = window.getSelection(); s.removeAllRanges(); s.addRange(r);
          }
        })();
        """#
}
