// The fedchain dashboard: renders the JSON snapshots of /api/events (server-sent events; /api/snapshot as the
// fallback) as the page. Every string from the chain or IPFS goes into the page as text (textContent, setAttribute),
// never as markup; links are built from encodeURIComponent'd CIDs under /content/.
//
// Panels: a feature that adds a per-task panel on the server (fedchain.views.dashboard.register_panel) registers
// its renderer here, in a script loaded after this one:
//     fedchain.registerPanel("committee", (container, data, task) => { container.append(fedchain.el("p", {}, "…")); });
// A panel without a renderer is shown as a table of its fields.
"use strict";

(function () {
  const panels = {};
  let snapshot = null;
  let clockOffset = 0;        // server time minus this browser's time, in seconds
  let selected = null;        // the task id shown
  let chart = null;           // { taskId, plot }
  let source = null;
  let currentToken = null;    // the shown task's reward token: {symbol, decimals}

  // ─── DOM helpers: text only ───
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function short(address) {
    const text = String(address);
    return text.length > 14 ? text.slice(0, 8) + "…" + text.slice(-4) : text;
  }

  function addressCell(address) {
    return el("span", { class: "mono", title: address }, short(address));
  }

  function cidLink(cid) {
    if (!cid) return el("span", { class: "muted" }, "–");
    return el("a", { class: "mono cid", href: "/content/" + encodeURIComponent(cid), title: cid, target: "_blank",
                     rel: "noopener noreferrer" }, short(cid));
  }

  // An amount for people: at most 4 decimals (rounded down); the exact amount in its title and data-units.
  function compact(value) {
    const token = currentToken || { decimals: 18, symbol: "" };
    const units = BigInt(value.units);
    const scale = 10n ** BigInt(token.decimals);
    const whole = units / scale;
    const keep = token.decimals > 4 ? 10n ** BigInt(token.decimals - 4) : 1n;
    const digits = Math.min(4, token.decimals);
    let fraction = digits ? String((units % scale) / keep).padStart(digits, "0").replace(/0+$/, "") : "";
    const approx = (units % keep) !== 0n;
    return (approx ? "≈" : "") + whole.toLocaleString("en-US") + (fraction ? "." + fraction : "") + " " + token.symbol;
  }

  function amount(value, field) {
    return el("span", { class: "amount", "data-field": field, "data-units": value.units, title: value.text },
              compact(value));
  }

  function amountCell(field, value) {
    return el("td", { "data-field": field, "data-value": value.units, title: value.text }, compact(value));
  }

  function percent(value) {
    return value === null || value === undefined ? "–" : (100 * value).toFixed(2) + "%";
  }

  function fixed(value, digits) {
    return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
  }

  function serverNow() {
    return Date.now() / 1000 + clockOffset;
  }

  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 3600) return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
    if (s < 172800) return Math.floor(s / 3600) + " h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + " min";
    return Math.floor(s / 86400) + " days";
  }

  function table(id, head, rows) {
    const t = el("table", { id: id, "data-testid": id });
    t.append(el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))));
    t.append(el("tbody", {}, rows));
    return t;
  }

  function cell(field, value, content) {
    return el("td", { "data-field": field, "data-value": value }, content === undefined ? value : content);
  }

  function badge(phase) {
    return el("span", { class: "badge " + phase, "data-testid": "phase" }, phase);
  }

  // ─── connection ───
  function setConnection(state, text) {
    const node = document.getElementById("connection");
    node.dataset.state = state;
    node.textContent = text;
  }

  function receive(json) {
    const data = JSON.parse(json);
    clockOffset = data.now - Date.now() / 1000;
    snapshot = data;
    render();
  }

  function connect() {
    if (!window.EventSource) return poll();
    source = new EventSource("/api/events");
    source.addEventListener("snapshot", (event) => { setConnection("live", "live"); receive(event.data); });
    source.onerror = () => setConnection("lost", "reconnecting…");
  }

  function poll() {
    fetch("/api/snapshot", { cache: "no-store" })
      .then((r) => r.text()).then((text) => { setConnection("live", "live (polling)"); receive(text); })
      .catch(() => setConnection("lost", "reconnecting…"))
      .finally(() => setTimeout(poll, 2000));
  }

  // ─── rendering ───
  function render() {
    const chain = snapshot.chain;
    const head = chain.head === null ? "?" : chain.head;
    document.getElementById("chain").textContent =
      `chain ${chain.chain_id} · indexed block ${chain.indexed_block} of ${head}` +
      (chain.confirmations ? ` (${chain.confirmations} confirmations)` : "");
    document.body.dataset.indexedBlock = chain.indexed_block;
    const error = document.getElementById("error");
    error.hidden = !chain.error;
    error.textContent = chain.error ? "Cannot follow the chain: " + chain.error : "";
    renderTabs();
    renderTask();
    renderTransactions();
  }

  function chosenTask() {
    const tasks = snapshot.tasks;
    if (!tasks.length) return null;
    const fromHash = /task=(\d+)/.exec(location.hash);
    const wanted = fromHash ? Number(fromHash[1]) : selected;
    return tasks.find((t) => t.task_id === wanted) || tasks[tasks.length - 1];
  }

  function renderTabs() {
    const nav = document.getElementById("tabs");
    const task = chosenTask();
    nav.replaceChildren(...snapshot.tasks.map((t) => el("a", {
      class: "tab" + (task && t.task_id === task.task_id ? " active" : ""), href: "#task=" + t.task_id,
      "data-testid": "task-tab", "data-task": t.task_id,
    }, `task ${t.task_id}`, t.spec ? el("span", { class: "muted" }, " " + t.spec.name) : null, " ", badge(t.state))));
  }

  function renderTask() {
    const main = document.getElementById("task");
    const task = chosenTask();
    if (!task) return;
    selected = task.task_id;
    currentToken = task.token;
    main.dataset.task = task.task_id;
    const keepChart = chart && chart.taskId === task.task_id ? chart.node : null;
    main.replaceChildren(
      el("section", { class: "cards" }, taskCard(task), budgetCard(task), currentCard(task)),
      el("section", { class: "panel" }, el("h2", {}, "Global model: accuracy and loss per round"),
         keepChart || el("div", { id: "chart", "data-testid": "chart" }),
         task.curve.length ? null : el("p", { class: "muted" }, "No round finalized yet.")),
      el("section", { class: "panel" }, el("h2", {}, "Rounds"), el("div", { class: "scroll" }, roundsTable(task))),
      el("section", { class: "panel" }, el("h2", {}, "Updates per contributor and round"),
         el("div", { class: "scroll" }, updatesTable(task))),
      el("section", { class: "panel" }, el("h2", {}, "Contributors"),
         el("div", { class: "scroll" }, contributorsTable(task))),
      ...panelSections(task),
    );
    drawChart(task);
    tick();
  }

  function taskCard(task) {
    const spec = task.spec;
    return el("div", { class: "card", "data-testid": "task-card" },
      el("h2", {}, `Task ${task.task_id} `, badge(task.state)),
      el("p", { class: "name", "data-testid": "task-name" }, spec ? spec.name : "(spec unavailable)"),
      spec ? el("p", { class: "muted" }, `${spec.kind} · ${spec.architecture} · ${spec.aggregation} · ` +
                `${spec.scoring}${spec.sealed ? " · sealed updates" : ""}`) : el("p", { class: "muted" }, task.spec_error),
      el("dl", {},
        el("dt", {}, "owner"), el("dd", {}, addressCell(task.owner)),
        el("dt", {}, "validator"), el("dd", {}, addressCell(task.validator)),
        el("dt", {}, "spec"), el("dd", {}, cidLink(task.spec_cid)),
        el("dt", {}, "initial model"), el("dd", {}, cidLink(task.initial_model_cid))));
  }

  function budgetCard(task) {
    const rows = [["budget", task.budget], ["reward per round", task.reward_per_round], ["allocated", task.allocated],
                  ["paid out", task.paid_out], ["unallocated", task.unallocated], ["refunded", task.refunded]];
    return el("div", { class: "card", "data-testid": "budget-card" }, el("h2", {}, "Budget"),
      el("dl", {}, rows.map(([label, value]) => [el("dt", {}, label),
        el("dd", {}, amount(value, label.replace(/ /g, "_")))])),
      el("p", { class: "muted small" }, `token ${task.token.symbol} `, addressCell(task.token.address)));
  }

  function currentCard(task) {
    const c = task.current;
    if (!c) return el("div", { class: "card", "data-testid": "current" }, el("h2", {}, "Rounds"),
      el("p", {}, `All ${task.num_rounds} round(s) decided: the task has ended.`));
    return el("div", { class: "card", "data-testid": "current", "data-round": c.round },
      el("h2", {}, `Round ${c.round} `, el("span", { class: "muted" }, `(${c.round + 1} of ${task.num_rounds}) `),
         badge(c.phase)),
      c.deadline ? el("p", { class: "countdown-line" },
        c.phase === "open" ? "submissions close in " : "the result is due in ",
        el("span", { class: "countdown", "data-testid": "countdown", "data-deadline": c.deadline }, "…")) : null,
      el("p", { class: "muted" }, "waiting for " + c.waiting_for),
      el("p", {}, `submitted: ${c.submitted.length} of ${c.max_contributors}`),
      el("ul", { class: "submitters", "data-testid": "submitters" },
        c.submitted.map((a) => el("li", { "data-contributor": a }, addressCell(a)))));
  }

  function roundsTable(task) {
    const head = ["round", "phase", "updates", "accepted", "accuracy", "loss", "rewards", "model", "report"];
    const rows = task.rounds.slice().reverse().map((r) => el("tr", { "data-round": r.round, "data-phase": r.phase },
      cell("round", r.round), cell("phase", r.phase, badge(r.phase)), cell("submissions", r.submissions),
      cell("accepted", r.accepted === null ? "" : r.accepted, r.accepted === null ? "–" : r.accepted),
      cell("accuracy", r.accuracy === null ? "" : r.accuracy, percent(r.accuracy)),
      cell("loss", r.loss === null ? "" : r.loss, fixed(r.loss, 4)),
      amountCell("total_rewards", r.total_rewards),
      cell("model_cid", r.model_cid || "", cidLink(r.model_cid)),
      cell("report_cid", r.report_cid || "", r.report_error ? el("span", { class: "warn" }, r.report_error)
                                                             : cidLink(r.report_cid))));
    return table("rounds", head, rows);
  }

  function updatesTable(task) {
    const head = ["round", "contributor", "update", "samples", "status", "reason", "score", "reward", "slashed",
                  "claimed", "claimable"];
    const rows = [];
    for (const r of task.rounds.slice().reverse()) {
      for (const u of r.updates) {
        rows.push(el("tr", { "data-round": r.round, "data-contributor": u.contributor, class: "status-" + u.status },
          cell("round", r.round), cell("contributor", u.contributor, addressCell(u.contributor)),
          cell("cid", u.cid, cidLink(u.cid)), cell("num_samples", u.num_samples),
          cell("status", u.status), cell("reason", u.reason || "", u.reason || "–"),
          cell("score", u.score === null ? "" : u.score, fixed(u.score, 4)),
          ...["reward", "slashed", "claimed", "claimable"].map((field) => u.status === "submitted"
            ? cell(field, u[field].units, "–")  // the round is undecided
            : amountCell(field, u[field]))));
      }
    }
    return table("updates", head, rows);
  }

  function contributorsTable(task) {
    const head = ["contributor", "updates", "accepted", "mean score", "earned", "claimed", "claimable", "slashed"];
    const rows = task.contributors.map((c) => el("tr", { "data-contributor": c.contributor },
      cell("contributor", c.contributor, addressCell(c.contributor)), cell("updates", c.updates),
      cell("accepted", c.accepted), cell("mean_score", c.mean_score === null ? "" : c.mean_score, fixed(c.mean_score, 4)),
      amountCell("earned", c.earned), amountCell("claimed", c.claimed), amountCell("claimable", c.claimable),
      amountCell("slashed", c.slashed)));
    return table("contributors", head, rows);
  }

  function panelSections(task) {
    return Object.entries(task.panels || {}).map(([name, data]) => {
      const container = el("section", { class: "panel", "data-panel": name }, el("h2", {}, name));
      const renderer = panels[name];
      if (renderer) renderer(container, data, task);
      else container.append(genericPanel(data));
      return container;
    });
  }

  function genericPanel(data) {
    if (data === null || typeof data !== "object") return el("p", {}, String(data));
    const rows = Object.entries(data).map(([k, v]) => el("tr", {}, el("th", {}, k),
      el("td", { class: "mono" }, typeof v === "object" ? JSON.stringify(v) : String(v))));
    return el("table", { class: "kv" }, el("tbody", {}, rows));
  }

  function renderTransactions() {
    const head = ["block", "time", "from", "call", "result", "gas", "transaction"];
    const rows = snapshot.transactions.map((t) => el("tr", { "data-tx": t.hash, class: t.status ? "" : "reverted" },
      cell("block", t.block_number), cell("time", t.timestamp, new Date(t.timestamp * 1000).toLocaleTimeString()),
      cell("sender", t.sender, addressCell(t.sender)), cell("function", t.function, `${t.contract}.${t.function}`),
      cell("error", t.error || "", t.status ? el("span", { class: "ok" }, "ok")
                                            : el("span", { class: "warn" }, "reverted: " + t.error_text)),
      cell("gas_used", t.gas_used, t.gas_used.toLocaleString("en-US")),
      cell("hash", t.hash, el("span", { class: "mono", title: t.hash }, short(t.hash)))));
    document.getElementById("transactions").replaceWith(table("transactions", head, rows));
  }

  // ─── the chart (uPlot, vendored) ───
  function drawChart(task) {
    const xs = task.curve.map((p) => p.round);
    const data = [xs, task.curve.map((p) => p.accuracy), task.curve.map((p) => p.loss)];
    if (chart && chart.taskId === task.task_id) { chart.plot.setData(data); return; }
    const node = document.getElementById("chart");
    if (!node || !window.uPlot) return;
    const width = Math.max(320, node.parentElement.clientWidth - 32);
    const plot = new uPlot({
      width: width, height: 260,
      // rounds 0 .. the last finalized one (uPlot would widen a single round to 0..100)
      scales: { x: { time: false, range: (u) => [0, Math.max(1, ...u.data[0])] },
                acc: { range: [0, 1] }, loss: {} },
      series: [
        { label: "round" },
        { label: "accuracy", scale: "acc", stroke: "#2563eb", width: 2, points: { show: true, size: 7 },
          value: (u, v) => (v === null ? "–" : (100 * v).toFixed(2) + "%") },
        { label: "loss", scale: "loss", stroke: "#dc2626", width: 2, points: { show: true, size: 7 },
          value: (u, v) => (v === null ? "–" : v.toFixed(4)) },
      ],
      axes: [
        { label: "round", incrs: [1, 2, 5, 10, 20, 50, 100] },
        { scale: "acc", label: "accuracy", values: (u, vals) => vals.map((v) => Math.round(v * 100) + "%") },
        { scale: "loss", label: "loss", side: 1, grid: { show: false } },
      ],
    }, data, node);
    chart = { taskId: task.task_id, plot: plot, node: node };
  }

  // ─── the live countdown ───
  function tick() {
    for (const node of document.querySelectorAll("[data-deadline]")) {
      const left = Number(node.dataset.deadline) - serverNow();
      node.textContent = left > 0 ? duration(left) : "any moment now";
      node.dataset.secondsLeft = Math.max(0, Math.round(left));
    }
  }

  window.fedchain = {
    registerPanel(name, render) { panels[name] = render; if (snapshot) renderTask(); },
    el: el,
    cidLink: cidLink,
    addressCell: addressCell,
  };
  window.addEventListener("hashchange", () => { if (snapshot) render(); });
  window.addEventListener("resize", () => { if (chart) chart.plot.setSize({ width: Math.max(320, chart.node.parentElement.clientWidth - 32), height: 260 }); });
  setInterval(tick, 250);
  connect();
})();
