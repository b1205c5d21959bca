// mcoflow pages: confirmation of operator buttons, and live updates of the plan page
// from its server-sent event stream. Data from the server is only ever set with
// textContent / value, never as HTML.
"use strict";

(function () {
  const KNOWN = new Set([
    "pending", "scheduled", "planning", "planned", "running", "paused", "stopped",
    "suspended", "success", "warning", "error", "skipping", "skipped", "cancelled",
  ]);
  const known = (value) => (KNOWN.has(value) ? value : "unknown");

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
    if (!window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    const field = form.querySelector('input[name="confirmed"]');
    if (field) field.value = "yes";
  });

  // the trigger page's template choice shows the chosen template's form at once
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.form && select.value) select.form.submit();
    });
  });

  const root = document.getElementById("plan");
  if (!root || root.dataset.finished === "true" || !window.EventSource) return;

  function setBadge(el, value) {
    if (!el) return;
    el.textContent = value;
    el.className = "badge badge-" + known(value);
  }

  function setText(el, value) {
    if (el && el.textContent !== value) el.textContent = value;
  }

  function badgeCell(value) {
    const td = document.createElement("td");
    const span = document.createElement("span");
    setBadge(span, value);
    td.appendChild(span);
    return td;
  }

  function textCell(value, className) {
    const td = document.createElement("td");
    td.textContent = value;
    if (className) td.className = className;
    return td;
  }

  function applyPlan(plan) {
    setText(root.querySelector('[data-plan="label"]'), plan.label);
    setBadge(root.querySelector('[data-plan="state"]'), plan.state);
    setBadge(root.querySelector('[data-plan="result"]'), plan.result);
    const bar = root.querySelector('[data-plan="progress"]');
    if (bar) bar.value = plan.progress;
    setText(root.querySelector('[data-plan="progress-text"]'), plan.progress + "%");
    for (const key of ["started", "ended", "duration"]) {
      setText(root.querySelector('[data-plan="' + key + '"]'), plan[key]);
    }
    const error = root.querySelector('[data-plan="error"]');
    if (error) {
      setText(error, plan.error);
      error.hidden = !plan.error;
    }
    for (const key of ["can_resume", "can_cancel"]) {
      root.querySelectorAll('.plan-header [data-show="' + key + '"]').forEach((el) => {
        el.hidden = !plan[key];
      });
    }
    root.dataset.finished = plan.finished ? "true" : "false";
  }

  function applyStep(step) {
    const box = document.getElementById("step-" + step.idx);
    if (box) {
      box.className = "step state-" + known(step.state);
      setBadge(box.querySelector('[data-field="state"]'), step.state);
      const bar = box.querySelector('[data-field="progress"]');
      if (bar) bar.value = step.progress;
    }
    const detail = document.getElementById("step-detail-" + step.idx);
    if (!detail) return;
    const wasError = detail.classList.contains("state-error");
    detail.className = "step-detail state-" + known(step.state);
    if (step.state === "error" && !wasError) detail.open = true;
    setBadge(detail.querySelector('summary [data-field="state"]'), step.state);
    const bar = detail.querySelector('summary [data-field="progress"]');
    if (bar) bar.value = step.progress;
    const reply = step.reply || {};
    detail.querySelectorAll(".step-body [data-field]").forEach((el) => {
      const name = el.dataset.field;
      const value = name.startsWith("reply.") ? reply[name.slice(6)] : step[name];
      setText(el, value === undefined || value === null ? "" : String(value));
    });
    const sections = {
      error: !!step.error_message,
      reply: !!step.reply,
      "reply-output": !!(step.reply && step.reply.output),
      output: !!step.output,
    };
    for (const [name, shown] of Object.entries(sections)) {
      const el = detail.querySelector('[data-section="' + name + '"]');
      if (el) el.hidden = !shown;
    }
    const skip = detail.querySelector('[data-show="can_skip"]');
    if (skip) skip.hidden = !step.can_skip;
  }

  // a failed host's Skip button: a copy of the page's form (it holds the CSRF token)
  function skipCell(host) {
    const td = document.createElement("td");
    const template = document.getElementById("host-skip-template");
    if (!host.can_skip || !template) return td;
    const form = template.content.firstElementChild.cloneNode(true);
    form.action = "/plans/" + encodeURIComponent(root.dataset.planId) + "/hosts/" +
      encodeURIComponent(host.plan_id) + "/skip";
    form.dataset.confirm = "Skip the failed steps of " + host.host + "? That host goes on without them.";
    td.appendChild(form);
    return td;
  }

  function applyHosts(snapshot) {
    const section = document.getElementById("hosts");
    const body = document.getElementById("host-rows");
    if (!section || !body) return;
    section.hidden = !snapshot.fleet;
    if (!snapshot.fleet) return;
    // the server sends the page of hosts this page shows, already filtered
    const rows = document.createDocumentFragment();
    for (const host of snapshot.hosts) {
      const tr = document.createElement("tr");
      tr.dataset.status = host.status;
      const name = document.createElement("td");
      const link = document.createElement("a");
      link.href = "/plans/" + encodeURIComponent(host.plan_id);
      link.textContent = host.host;
      name.appendChild(link);
      tr.append(name, badgeCell(host.state), badgeCell(host.result),
        textCell(host.duration), textCell(host.message, "message"), skipCell(host));
      rows.appendChild(tr);
    }
    body.replaceChildren(rows);
    setText(document.getElementById("host-summary"), snapshot.host_summary);
    section.querySelectorAll('[data-show="can_rerun"]').forEach((el) => {
      el.hidden = !snapshot.can_rerun;
    });
    section.querySelectorAll("[data-count]").forEach((el) => {
      const key = el.dataset.count;
      const n = key === "" || key === "total" ? snapshot.host_total : snapshot.host_counts[key] || 0;
      setText(el, String(n));
    });
    setText(document.getElementById("host-range"), snapshot.host_range);
    for (const [id, url] of [["host-prev", snapshot.host_prev_url], ["host-next", snapshot.host_next_url]]) {
      const link = document.getElementById(id);
      if (!link) continue;
      if (url) link.setAttribute("href", url);
      link.hidden = !url;
    }
  }

  function applyHistory(history) {
    const body = document.getElementById("history-rows");
    if (!body || body.children.length === history.length) return;
    const rows = document.createDocumentFragment();
    for (const entry of history) {
      const tr = document.createElement("tr");
      tr.append(textCell(entry.at), textCell(entry.what), textCell(entry.detail), textCell(entry.by));
      rows.appendChild(tr);
    }
    body.replaceChildren(rows);
  }

  const live = document.getElementById("live");
  const source = new EventSource(root.dataset.events);
  source.onopen = () => {
    if (live) {
      live.hidden = false;
      live.textContent = "live";
      live.classList.remove("stale");
    }
  };
  source.onerror = () => {
    if (live && root.dataset.finished !== "true") {
      live.textContent = "reconnecting…";
      live.classList.add("stale");
    }
  };
  source.addEventListener("plan", (event) => {
    const snapshot = JSON.parse(event.data);
    applyPlan(snapshot.plan);
    snapshot.steps.forEach(applyStep);
    applyHosts(snapshot);
    applyHistory(snapshot.history);
  });
  const stop = () => {
    source.close();
    if (live) live.hidden = true;
  };
  source.addEventListener("end", stop);
  source.addEventListener("gone", stop);
})();
