// depstrace HTML report: builds the page from the two JSON blocks above it.
// Values only ever reach the DOM through textContent (never innerHTML).
(function () {
  "use strict";
  const PAGE = 200; // table rows rendered per step
  const requests = JSON.parse(document.getElementById("ds-requests").textContent);
  const run = JSON.parse(document.getElementById("ds-run").textContent);
  const app = document.getElementById("app");
  const engines = new Map(run.engines.map((e) => [e.key, e]));
  const codeInfo = new Map(run.codes.map((c) => [c.code, c]));

  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = value;
      else if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
      else node.setAttribute(key, String(value));
    }
    for (const child of children || []) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }
  const plural = (n, noun) => `${n.toLocaleString("en")} ${noun}${n === 1 ? "" : "s"}`;
  const ms = (v) => (v === null || v === undefined ? "" : `${Number(v).toFixed(v < 10 ? 2 : 1)} ms`);
  const label = (r) => r.test || "(outside any test)";
  const engineOf = (r, id) => engines.get(`${r.p}:${id}`);
  const ops = (operations) => Object.entries(operations).map(([v, n]) => `${v} ${n}`).join(", ");
  const callFake = (c) => (c.fake ? `fake: ${c.fake}` : "real");

  // Facts each filter compares, computed once.
  requests.forEach((r, i) => {
    r._i = i;
    r._codes = [...new Set(r.findings.map((f) => f.code))];
    r._urls = r.dbs.map((d) => d.url);
    r._targets = r.calls.map((c) => c.target);
    r._external = r.calls.some((c) => !c.allowed);
    r._test = (r.test || "").toLowerCase();
  });

  // -- totals ---------------------------------------------------------------------------
  function totals() {
    const kind = run.status === 0 ? "good" : run.status === 1 ? "bad" : "warn";
    const t = run.totals;
    const section = el("section", { id: "totals" }, [
      el("h1", { text: "depstrace report" }),
      el("p", { class: `headline ${kind}`, id: "headline", text: run.headline }),
      el("ul", { class: "totals" }, [
        ["requests", t.requests], ["tests", t.tests], ["findings", t.findings], ["engines", t.engines],
      ].map(([name, n]) => el("li", { id: `total-${name}` }, [el("b", { text: n.toLocaleString("en") }), name]))),
    ]);
    if (run.trace) section.appendChild(el("p", { class: "muted", text: `trace: ${run.trace}` }));
    if (run.gate.length) section.appendChild(el("pre", { id: "gate", class: "problems", text: run.gate.join("\n") }));
    if (run.problems.length) {
      section.appendChild(el("ul", { class: "problems", id: "problems" }, run.problems.map((p) => el("li", { text: p }))));
    }
    if (run.account.length) {
      section.appendChild(el("details", {}, [
        el("summary", { text: "the account, as the terminal prints it" }),
        el("pre", { id: "account", text: run.account.join("\n") }),
      ]));
    }
    return section;
  }

  // -- findings -------------------------------------------------------------------------
  function findings() {
    const section = el("section", { id: "findings-section" }, [el("h2", { text: "Findings" })]);
    if (!run.codes.length) {
      section.appendChild(el("p", { class: "muted", id: "no-findings", text: "No finding." }));
      return section;
    }
    const body = el("tbody");
    for (const c of run.codes) {
      const tests = c.first_tests.join("\n") + (c.tests > c.first_tests.length ? `\n+${c.tests - c.first_tests.length} more` : "");
      body.appendChild(el("tr", { "data-code": c.code }, [
        el("td", {}, [el("span", { class: `code ${c.severity}`, text: c.code, title: "show its requests", on: { click: () => pick("code", c.code) } })]),
        el("td", { text: c.severity }),
        el("td", { class: "count", text: c.count.toLocaleString("en") }),
        el("td", { class: "mono", text: tests || "" }),
        el("td", {}, [
          el("ul", { class: "messages" }, c.messages.map((m) => el("li", { text: m.count > 1 ? `${m.text} (x${m.count})` : m.text }))),
          ...c.hints.map((h) => el("p", { class: "hint", text: `Fix: ${h}` })),
          c.page ? el("details", { class: "explain" }, [el("summary", { text: `depstrace explain ${c.code}` }), el("pre", { text: c.page })]) : null,
        ]),
      ]));
    }
    section.appendChild(el("table", { id: "findings" }, [
      el("thead", {}, [el("tr", {}, ["code", "severity", "count", "tests", "what it says, the fix, the explanation"].map((h) => el("th", { text: h })))]),
      body,
    ]));
    if (run.run_findings.length) {
      section.appendChild(el("h3", { text: "Findings tied to no request" }));
      section.appendChild(el("table", { id: "run-findings" }, [
        el("thead", {}, [el("tr", {}, ["code", "test", "phase", "message", "fix"].map((h) => el("th", { text: h })))]),
        el("tbody", {}, run.run_findings.map((f) => el("tr", {}, [
          el("td", {}, [el("span", { class: `code ${f.severity}`, text: f.code })]),
          el("td", { class: "mono", text: label(f) }), el("td", { text: f.phase || "" }),
          el("td", { text: f.message }), el("td", { text: f.hint || "" }),
        ]))),
      ]));
    }
    return section;
  }

  // -- requests -------------------------------------------------------------------------
  const state = { test: "", code: "", db: "", calls: "", shown: PAGE, rows: requests };
  const controls = {};
  const tbody = el("tbody");
  const counter = el("p", { class: "muted", id: "shown" });
  const more = el("button", { id: "more", text: "show more", on: { click: () => { state.shown += PAGE; render(); } } });
  const detail = el("section", { id: "detail", hidden: "" });

  function select(id, first, values) {
    return el("select", { id, on: { change: (e) => { state[id.slice(7)] = e.target.value; refilter(); } } },
      [first, ...values].map(([value, text]) => el("option", { value, text })));
  }

  function requestsSection() {
    const codes = run.codes.map((c) => [c.code, c.code]);
    const urls = [...new Set(requests.flatMap((r) => r._urls))].sort().map((u) => [u, u]);
    controls.test = el("input", { id: "filter-test", type: "search", placeholder: "part of a test id", on: { input: (e) => { state.test = e.target.value.toLowerCase(); refilter(); } } });
    controls.code = select("filter-code", ["", "any or none"], [["*", "any finding"], ["-", "no finding"], ...codes]);
    controls.db = select("filter-db", ["", "any"], [["-", "no database"], ...urls]);
    const targets = [...new Set(requests.flatMap((r) => r._targets))].sort().map((t) => [t, t]);
    controls.calls = select("filter-calls", ["", "any or none"], [["*", "any call"], ["!", "a call not allowed"], ["-", "no call"], ...targets]);
    return el("section", { id: "requests-section" }, [
      el("h2", { text: "Requests" }),
      el("div", { class: "filters" }, [
        el("label", {}, ["test", controls.test]),
        el("label", {}, ["finding code", controls.code]),
        el("label", {}, ["database", controls.db]),
        el("label", {}, ["outbound calls", controls.calls]),
      ]),
      counter,
      el("table", { id: "requests" }, [
        el("thead", {}, [el("tr", {}, ["test", "request", "route", "status", "databases", "reads / writes", "calls", "findings"].map((h) => el("th", { text: h })))]),
        tbody,
      ]),
      more,
      detail,
    ]);
  }

  function keep(r) {
    if (state.test && !r._test.includes(state.test)) return false;
    if (state.code === "*" ? !r._codes.length : state.code === "-" ? r._codes.length : state.code && !r._codes.includes(state.code)) return false;
    if (state.db === "-" ? r._urls.length : state.db && !r._urls.includes(state.db)) return false;
    if (state.calls === "*" ? !r.calls.length : state.calls === "!" ? !r._external : state.calls === "-" ? r.calls.length : state.calls && !r._targets.includes(state.calls)) return false;
    return true;
  }

  function pick(filter, value) {
    state[filter] = value;
    controls[filter].value = value;
    refilter();
    document.getElementById("requests-section").scrollIntoView();
  }

  function refilter() {
    state.rows = requests.filter(keep);
    state.shown = PAGE;
    render();
  }

  function row(r) {
    const index = r._i;
    return el("tr", { class: "req", "data-index": index, on: { click: () => show(index) } }, [
      el("td", { class: "mono test", text: label(r) }),
      el("td", { class: "mono", text: `${r.method} ${r.path}` }),
      el("td", { class: "mono", text: r.route || "" }),
      el("td", { text: r.status === null ? "no response" : r.status }),
      el("td", {}, r.dbs.map((d) => el("div", { class: `db ${d.is_test ? "test" : "prod"}`, text: d.database || d.url, title: d.url }))),
      el("td", { text: r.dbs.length ? `${r.reads} / ${r.writes}` : "" }),
      el("td", {}, r.calls.map((c) => el("div", { class: `call ${c.allowed ? "allowed" : "external"}`, text: c.host || c.target, title: c.target }))),
      el("td", {}, r._codes.map((c) => el("span", { class: `code ${(codeInfo.get(c) || {}).severity || ""}`, text: c }))),
    ]);
  }

  function render() {
    const rows = state.rows.slice(0, state.shown);
    const fragment = document.createDocumentFragment();
    for (const r of rows) fragment.appendChild(r._row || (r._row = row(r)));
    tbody.replaceChildren(fragment);
    counter.textContent = `${plural(state.rows.length, "request")} match` +
      (state.rows.length > rows.length ? `; showing the first ${rows.length.toLocaleString("en")}` : "");
    more.hidden = state.rows.length <= rows.length;
  }

  // -- one request ----------------------------------------------------------------------
  function dependency(r, node) {
    const engine = node.engine_id ? engineOf(r, node.engine_id) : null;
    return el("li", { class: `dep${node.overridden ? " overridden" : ""}${node.cached ? " cached" : ""}`, "data-id": node.id }, [
      el("span", { class: "name", text: node.name }), " ",
      node.overridden
        ? el("span", { class: "override mono", text: `${node.original} \u2192 ${node.resolved}` })
        : el("span", { class: "mono", text: node.resolved }),
      node.overridden ? el("span", { class: "badge overridden", text: node.override_site ? `override set at ${node.override_site}` : "overridden" }) : null,
      node.cached ? el("span", { class: "badge cached", text: "cached" }) : null,
      node.kind ? el("span", { class: "badge", text: node.kind }) : null,
      node.ms !== null && node.ms !== undefined ? el("span", { class: "badge", text: ms(node.ms) }) : null,
      node.value ? el("span", { class: "badge value", text: `produced ${node.value}` }) : null,
      node.engine_id ? el("span", { class: "badge engine", text: `engine ${node.engine_id}${engine ? ` ${engine.url}` : ""}` }) : null,
      node.error ? el("span", { class: "badge err", text: node.error }) : null,
    ]);
  }

  function tree(r) {
    const children = new Map();
    for (const node of r.deps) {
      const key = node.parent === null ? "root" : node.parent;
      if (!children.has(key)) children.set(key, []);
      children.get(key).push(node);
    }
    const build = (key) => el("ul", { class: key === "root" ? "tree" : "" }, (children.get(key) || []).map((node) => {
      const item = dependency(r, node);
      if (children.has(node.id)) item.appendChild(build(node.id));
      return item;
    }));
    return build("root");
  }

  function show(index) {
    const r = requests[index];
    for (const open of tbody.querySelectorAll("tr.open")) open.classList.remove("open");
    if (r._row) r._row.classList.add("open");
    const where = [r.test ? `${label(r)} (${r.phase})` : "outside any test", r.app ? `app ${r.app}` : null, r.worker ? `worker ${r.worker}` : null, ms(r.ms)].filter(Boolean).join(" \u00b7 ");
    detail.replaceChildren(...[
      el("h3", { text: `${r.id}  ${r.method} ${r.path} \u2192 ${r.status === null ? "no response" : r.status}` }),
      el("p", { class: "muted mono", text: where }),
      r.error ? el("p", { class: "problems", text: `error: ${r.error}` }) : null,
      el("h3", { text: "Dependencies" }),
      r.deps.length ? tree(r) : el("p", { class: "muted", text: "no dependency" }),
      el("h3", { text: "Databases" }),
      r.dbs.length ? el("ul", { class: "dbs" }, r.dbs.map((d) => {
        const engine = engineOf(r, d.engine_id);
        const said = ops(d.operations);
        return el("li", { class: `db ${d.is_test ? "test" : "prod"}` }, [
          el("span", { class: "mono", text: `${d.url} [engine ${d.engine_id}]` }),
          ` ${d.is_test ? "test database" : "NOT a test database"}; ${plural(d.statements, "statement")}${said ? ` (${said})` : ""}; ${plural(d.commits, "commit")}; `,
          d.via ? `via ${d.via}` : "opened outside Depends",
          d.origin ? ` \u2014 reached from ${d.origin}` : "",
          engine && engine.created_at ? ` \u2014 engine created at ${engine.created_at} during ${engine.created_phase}${engine.created_test ? ` of ${engine.created_test}` : ""}` : "",
        ]);
      })) : el("p", { class: "muted", text: "no database" }),
      el("h3", { text: "Outbound calls" }),
      r.calls.length ? callsTable("request-calls", r.calls, false) : el("p", { class: "muted", text: "no outbound call" }),
      el("h3", { text: "Order effects" }),
      r.order.length ? el("ul", { class: "order-effects" }, r.order.map((o) => el("li", { class: "order-effect" }, [
        el("span", { class: "badge", text: o.kind }), " ",
        el("span", { class: "mono object", text: o.object }),
        o.url ? el("span", { class: "mono", text: ` ${o.url}` }) : null,
        el("span", { class: "made", text: ` made in ${o.test}${o.phase ? ` (${o.phase})` : ""}` }),
        o.site ? el("span", { class: "mono site", text: ` at ${o.site}` }) : null,
        o.dependency ? ` — behind dependency ${o.dependency}` : "",
      ]))) : el("p", { class: "muted", text: "nothing made by an earlier test" }),
      el("h3", { text: "Findings" }),
      r.findings.length ? el("ul", { class: "request-findings" }, r.findings.map((f) => el("li", {}, [
        el("span", { class: `code ${f.severity}`, text: f.code }), " ", f.message,
        f.hint ? el("div", { class: "hint muted", text: `Fix: ${f.hint}` }) : null,
      ]))) : el("p", { class: "muted", text: "no finding" }),
    ].filter(Boolean));
    detail.hidden = false;
    detail.scrollIntoView({ block: "nearest" });
  }

  // -- outbound calls, guard -------------------------------------------------------------
  function callsTable(id, calls, where) {
    const head = [...(where ? ["test", "phase", "fixture"] : []), "target", "library", "operations", "fake or real", "allowed"];
    return el("table", { id, class: "calls" }, [
      el("thead", {}, [el("tr", {}, head.map((h) => el("th", { text: h })))]),
      el("tbody", {}, calls.map((c) => el("tr", { class: `call ${c.allowed ? "allowed" : "external"}` }, [
        ...(where ? [el("td", { class: "mono", text: label(c) }), el("td", { text: c.phase || "" }), el("td", { class: "mono", text: c.fixture || "" })] : []),
        el("td", { class: "mono target", text: c.target }),
        el("td", { text: `${c.library} (${c.system})` }),
        el("td", { class: "mono", text: ops(c.operations) }),
        el("td", { text: callFake(c) }),
        el("td", { class: c.allowed ? "db test" : "db prod", text: c.allowed ? "yes" : "NOT allowed: EXTERNAL_CALL" }),
      ]))),
    ]);
  }

  const byId = new Map(requests.map((r) => [`${r.p}:${r.id}`, r._i]));
  const rest = (shown, count) => (count > shown ? el("p", { class: "muted", text: `+${(count - shown).toLocaleString("en")} more in the trace file` }) : null);

  function guardTable(id, events) {
    return el("table", { id, class: "guard" }, [
      el("thead", {}, [el("tr", {}, ["operation", "table", "database", "test", "phase", "request", "why"].map((h) => el("th", { text: h })))]),
      el("tbody", {}, events.map((g) => {
        const index = g.request ? byId.get(`${g.p}:${g.request.id}`) : undefined;
        const said = g.request ? `${g.request.id} ${g.request.method} ${g.request.path}` : (g.fixture ? `fixture ${g.fixture}` : "outside any request");
        return el("tr", { class: `guard ${g.action}` }, [
          el("td", { class: "mono", text: g.operation }),
          el("td", { class: "mono", text: g.table || "" }),
          el("td", { class: "mono", text: `${g.url} [engine ${g.engine_id}]` }),
          el("td", { class: "mono", text: label(g) }),
          el("td", { text: g.phase || "" }),
          el("td", {}, [index === undefined ? el("span", { class: "mono", text: said }) : el("button", { class: "link", text: said, on: { click: () => show(index) } })]),
          el("td", {}, g.action === "refused" ? g.findings.map((c) => el("span", { class: `code ${(codeInfo.get(c) || {}).severity || ""}`, text: c })) : [g.allowed_by || ""]),
        ]);
      })),
    ]);
  }

  function guardSection() {
    const g = run.guard;
    if (!g.refused_count && !g.allowed_count) return null;
    return el("section", { id: "guard-section" }, [
      el("h2", { text: "Guard" }),
      el("p", { id: "guard-said", text: `The guard (mode ${(g.refused[0] || g.allowed[0]).mode}) refused ${plural(g.refused_count, "statement")} on non-test databases; ${plural(g.allowed_count, "allowed use")} recorded (the first statement an allowance let through, per engine and test).` }),
      g.refused_count ? el("h3", { text: "Refused" }) : null,
      g.refused_count ? guardTable("guard-refused", g.refused) : null,
      rest(g.refused.length, g.refused_count),
      g.allowed_count ? el("h3", { text: "Allowed" }) : null,
      g.allowed_count ? guardTable("guard-allowed", g.allowed) : null,
      rest(g.allowed.length, g.allowed_count),
    ]);
  }

  function outsideCallsSection() {
    if (!run.outside_calls_count) return null;
    return el("section", { id: "outside-calls-section" }, [
      el("h2", { text: "Calls outside requests" }),
      el("p", { class: "muted", text: "Outbound calls made by fixtures, test bodies, module-level code and threads, per test and target." }),
      callsTable("outside-calls", run.outside_calls, true),
      rest(run.outside_calls.length, run.outside_calls_count),
    ]);
  }

  // -- engines --------------------------------------------------------------------------
  function enginesSection() {
    const section = el("section", { id: "engines-section" }, [el("h2", { text: "Engines" })]);
    if (!run.engines.length) {
      section.appendChild(el("p", { class: "muted", text: "No engine seen." }));
      return section;
    }
    section.appendChild(el("table", { id: "engines" }, [
      el("thead", {}, [el("tr", {}, ["engine", "URL (redacted)", "test database", "created", "requests that used it"].map((h) => el("th", { text: h })))]),
      el("tbody", {}, run.engines.map((e) => el("tr", { "data-engine": e.key }, [
        el("td", { class: "mono", text: e.worker ? `${e.worker} ${e.id}` : e.id }),
        el("td", { class: "mono", text: e.url }),
        el("td", { class: `db ${e.is_test ? "test" : "prod"}`, text: e.is_test ? "yes" : "no" }),
        el("td", { class: "mono", text: [e.created_at ? `at ${e.created_at}` : "where depstrace could not see it", e.created_phase ? `during ${e.created_phase}` : null, e.created_test ? `of ${e.created_test}` : null, e.env_vars.length ? `URL from ${e.env_vars.join(", ")}` : null].filter(Boolean).join(" ") }),
        el("td", {}, [
          `${e.requests.toLocaleString("en")} `,
          ...e.first.map((i) => el("button", { class: "link", text: requests[i].id, on: { click: () => show(i) } })).flatMap((b) => [b, " "]),
          e.requests > e.first.length ? `+${e.requests - e.first.length} more` : "",
        ]),
      ]))),
    ]));
    return section;
  }

  app.replaceChildren(...[totals(), findings(), guardSection(), requestsSection(), enginesSection(), outsideCallsSection()].filter(Boolean));
  render();
  app.removeAttribute("aria-busy");
  document.body.dataset.ready = "1";
})();
