"""The support page's script (support_page.py inlines it). Every value from the API goes into
the page as a text node (`el()`, `textContent`); the chart is SVG built with createElementNS."""

from __future__ import annotations

SCRIPT = r"""
"use strict";
const KEY = "auto-topup-support-token";
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}
function show(text, isError) {
  const m = $("message");
  m.textContent = text;
  m.className = isError ? "error" : "muted";
}
function val(v) { return v === null || v === undefined || v === "" ? "—" : String(v); }
function money(amount, currency) { return amount === null || amount === undefined ? "—" : amount + " " + (currency || ""); }
function fields(rows) {
  const t = el("table");
  for (const [name, v] of rows) t.append(el("tr", {}, el("th", {}, name), el("td", {}, val(v))));
  return t;
}
function section(id, title, ...body) { return el("section", {id: id}, el("h2", {}, title), ...body); }
function list(id, title, items, render) {
  const body = items.length ? el("ul", {}, ...items.map((i) => el("li", {}, render(i)))) : el("p", {class: "muted"}, "none");
  return section(id, title, body);
}

async function api(path) {
  const token = sessionStorage.getItem(KEY) || "";
  const r = await fetch(path, {headers: {"Authorization": "Bearer " + token}, cache: "no-store"});
  if (r.status === 401) {
    show("401: the support token was refused. Enter the right token (ask whoever runs the service).", true);
    $("customer").replaceChildren();
    $("results").replaceChildren();
    throw new Error("unauthorized");
  }
  const body = await r.json();
  if (!r.ok) { show(r.status + ": " + (body.message || body.error), true); throw new Error(body.error); }
  return body;
}

function settingsSection(c) {
  const s = c.settings, b = c.balance, t = c.card_terms;
  if (!s) return section("settings", "Settings", el("p", {}, "No settings received."));
  return section("settings", "Settings and who made them", fields([
    ["payment method", s.payment_method], ["auto-trigger", s.auto_trigger ? "on" : "off"],
    ["trigger amount", money(s.trigger_amount, s.currency)],
    ["limit threshold", money(s.limit_threshold, s.currency)],
    ["timezone", s.effective_timezone], ["partner", s.partner_id],
    ["card on file", s.card ? "customer " + s.card.stripe_customer_id + ", payment method " + s.card.stripe_payment_method_id : null],
    ["card's amounts", t ? "trigger " + money(t.trigger_amount, t.currency) + ", threshold " + money(t.limit_threshold, t.currency) : null],
    ["Stripe paused", s.stripe_paused ? "yes" : "no"],
    ["set by", s.origin + " (" + s.origin_label + ")"], ["event_id", s.event_id],
    ["occurred_at", s.occurred_at], ["version", s.version],
    ["last balance", b ? money(b.amount, b.currency) : null], ["balance at", b ? b.occurred_at : null],
  ]));
}

function chart(c) {
  const ch = c.balance_chart, W = 560, H = 200, P = 44;
  const pts = ch.points.map((p) => [Date.parse(p.at), Number(p.balance)]);
  const root = svg("svg", {id: "balance-chart", width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img",
    "aria-label": "balance against the threshold since " + ch.since});
  const th = ch.threshold === null ? null : Number(ch.threshold);
  // From the first point (or the chart's start, without one) to now.
  const xs = pts.map((p) => p[0]).concat([pts.length ? Date.parse(c.now) - 3600e3 : Date.parse(ch.since), Date.parse(c.now)]);
  const ys = pts.map((p) => p[1]).concat(th === null ? [] : [th]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  let y0 = ys.length ? Math.min(...ys) : 0, y1 = ys.length ? Math.max(...ys) : 1;
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const pad = (y1 - y0) * 0.15;
  y0 -= pad; y1 += pad;
  const X = (x) => P + (W - 2 * P) * (x - x0) / Math.max(x1 - x0, 1);
  const Y = (y) => H - P + (2 * P - H) * (y - y0) / (y1 - y0);
  root.append(svg("line", {x1: P, y1: H - P, x2: W - P, y2: H - P, stroke: "#9aa3b2"}));
  root.append(svg("text", {x: 4, y: Y(y1) + 4}, y1.toFixed(2)), svg("text", {x: 4, y: Y(y0) + 4}, y0.toFixed(2)));
  const day = (ms) => new Date(ms).toISOString().slice(0, 16).replace("T", " ");
  root.append(svg("text", {x: P, y: H - P + 16}, day(x0)), svg("text", {x: W - P - 90, y: H - P + 16}, day(x1) + " UTC"));
  if (th !== null) {
    root.append(svg("line", {class: "threshold", x1: P, y1: Y(th), x2: W - P, y2: Y(th)}));
    root.append(svg("text", {x: P + 4, y: Y(th) - 5}, "threshold " + ch.threshold + " " + (ch.currency || "")));
  }
  root.append(svg("polyline", {class: "balance", points: pts.map((p) => X(p[0]) + "," + Y(p[1])).join(" ")}));
  for (const [p, raw] of pts.map((p, i) => [p, ch.points[i]])) {
    const dot = svg("circle", {class: "point", cx: X(p[0]), cy: Y(p[1]), r: 3.5});
    dot.append(svg("title", {}, raw.balance + " " + (ch.currency || "") + " at " + raw.at));
    root.append(dot);
  }
  const note = pts.length ? ch.points.length + " points since " + ch.since : "no balance recorded since " + ch.since;
  return section("chart", "Balance against the threshold", root, el("p", {class: "muted"}, note));
}

function todaySection(c) {
  const d = c.daily, t = c.today, k = t.key, n = c.next_top_up;
  return section("today", "Today's daily key and the next top-up", fields([
    ["business date", d.today], ["timezone", d.timezone], ["daily key", t.daily_key],
    ["state", k ? k.phase + " / " + val(k.result) + (k.reason ? " (" + k.reason + ")" : "") : "free (no top-up attempted today)"],
    ["taken dates", d.taken_dates.length ? d.taken_dates.join(", ") : "none"],
    ["attempt day ends", d.attempt_day_end],
    ["next top-up", n.code], ["not before", n.not_before],
  ]), el("p", {id: "next-sentence"}, n.sentence));
}

function decisionsSection(c) {
  const rows = c.history.filter((h) => h.kind === "decision");
  const t = el("table", {id: "decisions"}, el("tr", {}, el("th", {}, "at"), el("th", {}, "outcome"), el("th", {}, "reason"), el("th", {}, "method · date · detail")));
  for (const h of rows) {
    t.append(el("tr", {class: "decision"}, el("td", {}, val(h.at)), el("td", {class: "outcome"}, h.outcome),
      el("td", {class: "reason"}, val(h.reason)), el("td", {}, [h.method, h.business_date, h.detail].filter((x) => x).join(" · ") || "—")));
  }
  const summary = el("table", {id: "decision-summary"});
  for (const d of c.decisions) {
    summary.append(el("tr", {}, el("td", {}, d.outcome), el("td", {class: "reason"}, val(d.reason)),
      el("td", {}, d.times + " times, last " + d.last_at), el("td", {class: "muted"}, d.source)));
  }
  return section("decisions-section", "Last decisions and their reasons (newest first)",
    rows.length ? t : el("p", {class: "muted"}, "No decision recorded."),
    el("h2", {}, "Summary (last of each kind)"), summary);
}

function settingsHistory(c) {
  return list("settings-history", "Settings applied (history)", c.history.filter((h) => h.kind === "settings"),
    (h) => h.at + " · event " + val(h.event_id));
}

function partnerSection(c) {
  const p = c.as_partner, f = c.funding_partner;
  if (!p && !f) return null;
  const rows = [];
  if (p) rows.push(["funds customers", p.funded_customers], ["available funds", money(p.available_funds, p.currency)],
    ["reservations", p.credits_out.map((r) => r.amount + " at " + r.issued_at).join("; ") || "none"]);
  if (f) rows.push(["paid from partner", f.partner_id], ["partner's available funds", money(f.available_funds, f.currency)],
    ["a top-up now would", f.failure_if_due_now ? "fail: " + f.failure_if_due_now : "issue the credit"]);
  return section("partner", "Partner", fields(rows));
}

function render(c) {
  const dl = c.dead_letters;
  $("customer").replaceChildren(...[
    settingsSection(c), chart(c), todaySection(c), decisionsSection(c), settingsHistory(c), partnerSection(c),
    list("dead-letters", "Dead letters", dl.recent.concat(dl.rejected_settings),
      (d) => val(d.at || d.rejected_at) + " · " + val(d.reason) + " · event " + val(d.event_id)),
    list("open-invoices", "Open invoices", c.open_invoices, (i) => [i.business_date, money(i.amount, i.currency),
      i.status, "requested " + i.requested_at, i.overdue_noticed_at ? "overdue noticed " + i.overdue_noticed_at : ""].filter((x) => x).join(" · ")),
    list("notices", "Notices", c.notices, (n) => [n.emitted_at, n.type, n.period, n.reason,
      n.amount && money(n.amount, n.currency)].filter((x) => x).join(" · ")),
  ].filter((s) => s));
  show("Customer " + c.customer_id + " as of " + c.now, false);
}

async function open(id) {
  try { render(await api("/v1/customers/" + encodeURIComponent(id))); } catch (e) { /* shown */ }
}

async function search(ev) {
  ev.preventDefault();
  const prefix = $("search").value.trim();
  if (!prefix) return;
  try {
    const r = await api("/v1/customers?prefix=" + encodeURIComponent(prefix));
    $("results").replaceChildren(...r.customers.map((id) => {
      const b = el("button", {type: "button", class: "result"}, id);
      b.addEventListener("click", () => open(id));
      return b;
    }));
    if (r.customers.length === 1) await open(r.customers[0]);
    else show(r.customers.length ? "Choose a customer." : "No customer starts with that.", false);
  } catch (e) { /* shown */ }
}

$("token").value = sessionStorage.getItem(KEY) || "";
$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, $("token").value.trim());
  show("Token kept for this tab. Search a customer.", false);
});
$("search-form").addEventListener("submit", search);
"""
