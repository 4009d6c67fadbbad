// store-agent screens: the associate console, the customer kiosk, sign-in and the
// demo page. No framework and no build step: the pages are served by the agent,
// offline, to weak kiosk hardware.
//
// Rules this file keeps:
// * Data only ever reaches the page through textContent (el() below), never
//   innerHTML, so a customer named <script> is text.
// * Every state-changing request sends the page's CSRF token (X-CSRF-Token).
// * Strings come from the page's table (t()), one per language, kept in
//   kiosk-ui/src/i18n.rs.
"use strict";

(function () {
  const body = document.body;
  const page = body.dataset.page;
  const csrf = body.dataset.csrf;
  const lang = document.documentElement.lang || "en";
  const strings = JSON.parse(body.dataset.strings || "{}");
  const t = (key) => strings[key] || key;
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function show(node, ...children) {
    node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
    node.hidden = false;
  }

  function hide(node) {
    node.hidden = true;
    node.replaceChildren();
  }

  async function api(method, path, payload) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET") {
      init.headers["X-CSRF-Token"] = csrf;
      if (payload !== undefined) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(payload);
      }
    }
    const res = await fetch(path, init);
    let data = null;
    if (res.status !== 204) {
      try { data = await res.json(); } catch (_) { data = null; }
    }
    if (!res.ok) {
      const err = new Error((data && data.error) || res.statusText);
      err.status = res.status;
      err.data = data;
      throw err;
    }
    return data;
  }

  function money(minor, currency) {
    if (minor === null || minor === undefined || !currency) return "";
    try {
      const f = new Intl.NumberFormat(lang, { style: "currency", currency });
      const digits = f.resolvedOptions().maximumFractionDigits;
      return f.format(minor / Math.pow(10, digits));
    } catch (_) {
      return (minor / 100).toFixed(2) + " " + currency;
    }
  }

  function when(ms) {
    return ms ? new Date(ms).toLocaleString(lang, { dateStyle: "short", timeStyle: "short" }) : "";
  }

  function stockLine(stock) {
    if (!stock) return el("span", { class: "meta" }, t("product.no_stock_record"));
    const place = stock.aisle ? [" · ", t("product.aisle"), " ", stock.aisle, stock.bin ? "/" + stock.bin : ""] : [];
    if (stock.available > 0) {
      return el("span", { class: "stock-ok" }, String(stock.available), " ", t("product.in_stock"), ...place);
    }
    return el("span", { class: "stock-none" }, t("product.out_of_stock"), ...place);
  }

  // ---- status bar, shared by console and kiosk ----

  function renderStatus(s) {
    const online = $("status-online");
    if (!online || !s) return;
    if (s.online) {
      online.textContent = t("status.online");
      online.className = "pill ok";
    } else if (s.since_ms) {
      online.textContent = t("status.offline_since") + " " + when(s.since_ms);
      online.className = "pill bad";
    } else {
      online.textContent = t("status.never_connected");
      online.className = "pill warn";
    }
    online.dataset.online = s.online ? "true" : "false";
    $("status-data").textContent = s.data_as_of_ms
      ? t("status.data_as_of") + " " + when(s.data_as_of_ms)
      : t("status.no_data");
    $("status-waiting").textContent = String(s.events_waiting) + " " + t("status.waiting");
    $("status-waiting").dataset.count = String(s.events_waiting);
    $("status-devices").textContent = s.devices_connected + "/" + s.devices_total + " " + t("status.devices");
  }

  async function refreshStatus() {
    try { renderStatus(await api("GET", "/api/v1/status")); } catch (_) { /* shown by the live flag */ }
  }

  // ---- live events ----

  function live(onMessage, onEnded) {
    let source = null;
    const flag = $("status-live");
    function connect() {
      source = new EventSource("/api/v1/events");
      source.onopen = () => { if (flag) flag.hidden = true; refreshStatus(); };
      source.onmessage = (m) => {
        let msg;
        try { msg = JSON.parse(m.data); } catch (_) { return; }
        if (msg.type === "hello") { if (flag) flag.hidden = true; body.dataset.live = "up"; return; }
        if (msg.type === "status") { renderStatus(msg.status); return; }
        onMessage(msg);
      };
      source.onerror = () => {
        if (flag) flag.hidden = false;
        body.dataset.live = "down";
        if (source.readyState === EventSource.CLOSED) {
          // The server refused the stream (session ended) or went away for good:
          // ask whether we are still signed in, then retry.
          source = null;
          setTimeout(async () => {
            try {
              const who = await api("GET", "/api/v1/session");
              if (onEnded && who.role !== (page === "kiosk" ? "kiosk" : "staff")) { onEnded(); return; }
            } catch (_) { /* agent down: keep trying */ }
            connect();
          }, 2000);
        }
      };
    }
    connect();
    setInterval(refreshStatus, 30000);
  }

  // ---- sign-in ----

  function signIn() {
    const form = $("signin");
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const err = $("signin-error");
      err.hidden = true;
      try {
        await api("POST", "/api/v1/session", {
          associate_id: $("associate-id").value.trim(),
          pin: $("pin").value,
        });
        location.replace("/console");
      } catch (ex) {
        $("pin").value = "";
        err.textContent = ex.status === 401 ? t("signin.failed") : ex.message;
        err.hidden = false;
      }
    });
  }

  // ---- console ----

  function itemCard(name, gtin, lines) {
    return el("div", { class: "item", "data-gtin": gtin }, el("div", { class: "name" }, name || gtin), ...lines);
  }

  function renderPanel(c) {
    const p = c.profile;
    const consent = safeJson(p.consent_json);
    const prefs = safeJson(p.preferences_json);
    const personalised = consent.personalisation === true || consent.personalization === true;
    const prefText = personalised
      ? Object.entries(prefs).map(([k, v]) => k + ": " + (Array.isArray(v) ? v.join(", ") : v)).join(" · ")
      : t("customer.preferences_hidden");
    const wish = c.wishlist.length
      ? el("div", { class: "grid" }, c.wishlist.map((w) =>
          itemCard(w.name, w.gtin, [
            el("div", { class: "meta" }, money(w.price_minor, w.currency)),
            stockLine(w.stock),
          ])))
      : el("p", { class: "meta" }, t("customer.wishlist_empty"));
    const cart = c.cart && c.cart.lines.length
      ? el("div", { class: "grid" }, c.cart.lines.map((l) =>
          itemCard(l.name, l.gtin, [
            el("div", { class: "meta" }, l.qty + " × " + money(l.unit_price_minor, c.cart.currency)),
            stockLine(l.stock),
          ])))
      : el("p", { class: "meta" }, t("customer.cart_empty"));
    const orders = c.open_orders.length
      ? el("ul", {}, c.open_orders.map((o) =>
          el("li", { "data-order": o.order_id },
            el("button", { type: "button", class: "secondary", on: { click: () => openOrder(o.order_id) } },
              o.order_id + " · " + money(o.total_minor, o.currency) + " · " + o.lines.length + " " + t("queue.lines")))))
      : el("p", { class: "meta" }, t("customer.orders_none"));
    const orderButton = (o) => el("button", { type: "button", class: "secondary", on: { click: () => openOrder(o.order_id) } },
      o.order_id + " · " + statusText(o) + " · " + money(o.total_minor, o.currency)
      + (o.fulfilled_at_ms ? " · " + when(o.fulfilled_at_ms) : ""));
    const received = (c.recent_orders || []).length
      ? el("ul", {}, c.recent_orders.map((o) => el("li", { "data-order": o.order_id }, orderButton(o))))
      : el("p", { class: "meta" }, t("customer.received_none"));
    const purchases = (c.recent_purchases || []).length
      ? el("ul", {}, c.recent_purchases.map((x) => el("li", { "data-tx": x.tx_id },
          when(x.at_ms) + " · " + tOr("purchase.kind." + x.kind, x.kind) + " · " + money(x.total_minor, x.currency)
          + " · " + x.items + " " + t("queue.lines"))))
      : el("p", { class: "meta" }, t("customer.purchases_none"));
    show($("panel"),
      el("h2", { id: "customer-name" }, p.display_name),
      el("p", {},
        el("span", { id: "customer-tier" }, t("customer.tier") + ": " + (p.tier || "–")), " · ",
        el("span", { id: "customer-points" }, t("customer.points") + ": " + p.points)),
      el("p", { class: "meta", id: "customer-prefs" }, t("customer.preferences") + ": " + prefText),
      el("h3", {}, t("customer.wishlist")), el("div", { id: "wishlist" }, wish),
      el("h3", {}, t("customer.cart")), el("div", { id: "cart" }, cart),
      el("h3", {}, t("customer.orders")), el("div", { id: "open-orders" }, orders),
      el("h3", {}, t("customer.received")), el("div", { id: "recent-orders" }, received),
      el("h3", {}, t("customer.purchases")), el("div", { id: "recent-purchases" }, purchases),
      el("button", { type: "button", id: "customer-close", class: "secondary", on: { click: () => hide($("panel")) } }, t("customer.close")));
    $("panel").dataset.customer = p.customer_id;
  }

  function safeJson(text) {
    try { const v = JSON.parse(text || "{}"); return v && typeof v === "object" ? v : {}; } catch (_) { return {}; }
  }

  function renderProduct(gtin, p) {
    if (!p) {
      show($("product"), el("h2", {}, t("product.title")), el("p", { class: "error" }, t("product.not_found")), el("p", { class: "meta" }, gtin));
      return;
    }
    show($("product"),
      el("h2", { id: "product-name" }, p.name),
      el("p", { class: "meta" }, [p.brand, p.sku, p.gtin].filter(Boolean).join(" · ")),
      el("p", { id: "product-price" }, t("product.price") + ": " + money(p.price_minor, p.currency)),
      el("p", { id: "product-stock" }, stockLine(p.stock)),
      page === "console" ? el("div", { id: "product-nearby" }) : null);
    if (page === "console") nearbyStock(p.gtin);
  }

  // Stock in nearby stores comes from the cloud, asked now; offline there is none.
  async function nearbyStock(gtin) {
    const box = $("product-nearby");
    if (!isOnline()) { box.replaceChildren(el("p", { class: "meta" }, t("product.nearby_offline"))); return; }
    box.replaceChildren(el("p", { class: "meta" }, t("product.nearby_loading")));
    let stores;
    try { stores = await api("GET", "/api/v1/products/" + encodeURIComponent(gtin) + "/nearby"); }
    catch (_) { if ($("product-nearby") === box) box.replaceChildren(el("p", { class: "meta" }, t("product.nearby_offline"))); return; }
    if ($("product-nearby") !== box) return;
    box.replaceChildren(
      el("h3", {}, t("product.nearby")),
      stores.length
        ? el("ul", {}, stores.map((s) => el("li", { "data-store": s.store_id },
            s.name + " · " + (s.available > 0 ? s.available + " " + t("product.in_stock") : t("product.out_of_stock_there"))
            + (s.distance_m ? " · " + (s.distance_m / 1000).toFixed(1) + " km" : ""))))
        : el("p", { class: "meta" }, t("product.nearby_none")));
  }

  function isOnline() {
    const o = $("status-online");
    return o && o.dataset.online === "true";
  }

  // ---- orders: BOPIS arrival and hand-over, BORIS returns ----

  const REASONS = ["wrong_size", "not_as_described", "defective", "damaged_in_transit", "changed_mind", "other"];
  const CONDITIONS = ["unopened", "like_new", "used", "damaged"];
  const DISPOSITIONS = ["restock", "damaged"];
  const REFUNDS = ["original_tender", "gift_card", "store_credit"];
  const OPEN_PICKUP = ["ready_for_pickup", "customer_arrived"];

  // A string of the table by a key built at run time (codes from the server),
  // with the server's own text when the table has none.
  function tOr(key, fallback) { return strings[key] || fallback; }

  const statusText = (o) => o.kind === "delivered" && o.status === "handed_over"
    ? t("order.status.delivered") : tOr("order.status." + o.status, o.status);
  const gtin14 = (g) => String(g || "").padStart(14, "0");
  const isManager = () => { const a = $("associate"); return a && a.dataset.role === "manager"; };
  const hasPrinter = () => body.dataset.printer === "true";

  // The order on screen, and the hand-over in progress (null when none).
  let current = null;
  let handover = null;

  function renderOrder(o) {
    current = o;
    handover = null;
    if (!o) {
      const n = $("order");
      show(n, el("p", { class: "error" }, t("scan.order_not_found")));
      delete n.dataset.orderId;
      return;
    }
    const n = $("order");
    const canPickUp = o.kind === "bopis" && OPEN_PICKUP.includes(o.status);
    const actions = el("div", { class: "actions", id: "order-actions" },
      o.kind === "bopis" && o.status === "ready_for_pickup"
        ? el("button", { type: "button", id: "order-arrived", class: "secondary", on: { click: () => markArrived(o) } }, t("order.mark_arrived"))
        : null,
      canPickUp ? el("button", { type: "button", id: "handover-start", on: { click: () => startHandover(o) } }, t("handover.start")) : null,
      o.fulfilled_at_ms ? el("button", { type: "button", id: "return-start", on: { click: () => startReturn(o) } }, t("return.start")) : null);
    show(n,
      el("h2", {}, t("order.title") + " " + o.order_id),
      el("p", {},
        el("span", { id: "order-status", "data-status": o.status }, statusText(o)),
        " · " + money(o.total_minor, o.currency) + " · " + when(o.placed_at_ms),
        o.pickup_deadline_ms && canPickUp ? " · " + t("order.pickup_by") + " " + when(o.pickup_deadline_ms) : null,
        o.fulfilled_at_ms ? " · " + t("order.received") + " " + when(o.fulfilled_at_ms) : null),
      el("ul", { id: "order-lines" }, o.lines.map((l) => el("li", { "data-line": l.line_no },
        l.qty_ordered + " × " + l.name + " (" + l.gtin + ")",
        l.qty_returned ? el("span", { class: "meta" }, " · " + l.qty_returned + " " + t("order.returned")) : null,
        l.qty_refused ? el("span", { class: "meta" }, " · " + l.qty_refused + " " + t("order.refused")) : null,
        l.final_sale ? el("span", { class: "meta" }, " · " + t("order.final_sale")) : null))),
      actions,
      el("div", { id: "order-work" }));
    n.dataset.orderId = o.order_id;
    n.dataset.status = o.status;
    n.dataset.kind = o.kind;
  }

  async function markArrived(o) {
    try {
      renderOrder(await api("POST", "/api/v1/orders/" + encodeURIComponent(o.order_id) + "/arrived"));
      loadQueue(o.order_id);
    } catch (ex) { notice(ex.message); }
  }

  // Hand-over: every unit of every line the customer takes is scanned; a product
  // that is not on the order is flagged; the ID check is confirmed by the associate.
  function startHandover(o) {
    handover = { order: o, scanned: {}, refused: {} };
    for (const l of o.lines) { handover.scanned[l.line_no] = 0; handover.refused[l.line_no] = false; }
    $("order-actions").hidden = true;
    const lines = el("ul", { id: "handover-lines" }, o.lines.map((l) => el("li", { "data-line": l.line_no, "data-state": "pending" },
      el("span", { class: "name" }, l.name), " ",
      el("span", { class: "count" }),
      el("label", { class: "inline" },
        el("input", { type: "checkbox", class: "refuse", "data-line": l.line_no, on: { change: (e) => {
          handover.refused[l.line_no] = e.target.checked; renderHandover();
        } } }), " " + t("handover.refused")))));
    show($("order-work"),
      el("h3", {}, t("handover.title")),
      el("p", { class: "meta" }, t("handover.scan_each")),
      lines,
      el("p", { id: "handover-wrong", role: "alert", class: "error", hidden: true }),
      el("label", { class: "inline" }, el("input", { type: "checkbox", id: "id-checked", on: { change: renderHandover } }), " " + t("handover.id_checked")),
      hasPrinter()
        ? el("label", { class: "inline" }, el("input", { type: "checkbox", id: "print-slip", checked: true }), " " + t("handover.print_slip"))
        : el("p", { class: "meta" }, t("handover.no_printer")),
      el("div", { class: "actions" },
        el("button", { type: "button", id: "handover-confirm", disabled: true, on: { click: confirmHandover } }, t("handover.confirm")),
        el("button", { type: "button", class: "secondary", on: { click: () => renderOrder(current) } }, t("handover.cancel"))));
    renderHandover();
  }

  function renderHandover() {
    if (!handover) return;
    let ready = true;
    let taken = 0;
    for (const l of handover.order.lines) {
      const li = document.querySelector('#handover-lines li[data-line="' + l.line_no + '"]');
      const refused = handover.refused[l.line_no];
      const done = handover.scanned[l.line_no] >= l.qty_ordered;
      li.dataset.state = refused ? "refused" : done ? "verified" : "pending";
      li.querySelector(".count").textContent = refused
        ? t("handover.refused")
        : handover.scanned[l.line_no] + "/" + l.qty_ordered + " " + (done ? t("handover.verified") : t("handover.scanned"));
      if (!refused) { taken += 1; if (!done) ready = false; }
    }
    const confirm = $("handover-confirm");
    confirm.disabled = !(ready && $("id-checked").checked);
    confirm.textContent = taken === 0 ? t("handover.confirm_refused") : t("handover.confirm");
  }

  function handoverScan(gtin, product) {
    const wrong = $("handover-wrong");
    const line = handover.order.lines.find((l) => gtin14(l.gtin) === gtin14(gtin)
      && !handover.refused[l.line_no] && handover.scanned[l.line_no] < l.qty_ordered);
    if (!line) {
      const onOrder = handover.order.lines.some((l) => gtin14(l.gtin) === gtin14(gtin));
      wrong.textContent = (onOrder ? t("handover.already_scanned") : t("handover.wrong_item")) + ": "
        + (product ? product.name + " · " : "") + gtin;
      wrong.hidden = false;
      return;
    }
    wrong.hidden = true;
    handover.scanned[line.line_no] += 1;
    renderHandover();
  }

  async function confirmHandover() {
    const o = handover.order;
    const refused = o.lines.filter((l) => handover.refused[l.line_no]).map((l) => l.line_no);
    const slip = $("print-slip");
    try {
      const done = await api("POST", "/api/v1/orders/" + encodeURIComponent(o.order_id) + "/handover", {
        refused_lines: refused, id_checked: $("id-checked").checked, print_slip: !!(slip && slip.checked),
      });
      renderOrder(done.order);
      notice("");
      show($("order-work"), el("p", { id: "handover-result", class: "ok", role: "status", "data-status": done.order.status },
        statusText(done.order) + ". "
        + (isOnline() ? t("handover.sent") : t("handover.queued"))
        + (done.printed ? " " + t("handover.printed") : "")));
      loadQueue();
    } catch (ex) { notice(ex.message); }
  }

  // BORIS: lines and quantities, the policy's decision with its reasons, a
  // manager's approval where the policy or the offline limit asks for one.
  function startReturn(o) {
    handover = null;
    $("order-actions").hidden = true;
    const select = (id, prefix, codes) => el("select", { id, required: true },
      el("option", { value: "" }, "–"),
      codes.map((c) => el("option", { value: c }, tOr(prefix + c, c))));
    const field = (id, label, control) => el("div", { class: "field" }, el("label", { for: id }, label), control);
    const lines = o.lines.map((l) => {
      const left = Math.max(0, l.qty_ordered - l.qty_returned - l.qty_refused);
      return el("div", { class: "field line" },
        el("label", { for: "return-qty-" + l.line_no }, l.name + " (" + left + "/" + l.qty_ordered + ")"
          + (l.final_sale ? " · " + t("order.final_sale") : "")),
        el("input", { type: "number", id: "return-qty-" + l.line_no, class: "return-qty", "data-line": l.line_no,
          min: 0, max: left, value: 0, inputmode: "numeric", on: { input: clearDecision } }));
    });
    const override = el("fieldset", { id: "return-override", hidden: true, on: { input: () => returnError("") } },
      el("legend", {}, t("return.override")),
      field("override-reason", t("return.override_reason"), el("input", { id: "override-reason", autocomplete: "off", maxlength: 500 })),
      isManager() ? el("p", { class: "meta" }, t("return.you_approve")) : [
        field("override-manager-id", t("return.manager_id"), el("input", { id: "override-manager-id", autocomplete: "off" })),
        field("override-manager-pin", t("return.manager_pin"), el("input", { id: "override-manager-pin", type: "password", inputmode: "numeric", autocomplete: "off" })),
      ]);
    const form = el("form", { id: "return-form", on: { submit: (e) => { e.preventDefault(); recordReturn(o); } } },
      el("h3", {}, t("return.title")),
      lines,
      field("return-reason", t("return.reason"), select("return-reason", "return.reason.", REASONS)),
      field("return-condition", t("return.condition"), select("return-condition", "return.condition.", CONDITIONS)),
      field("return-disposition", t("return.disposition"), select("return-disposition", "return.disposition.", DISPOSITIONS)),
      field("return-refund-method", t("return.refund_method"), select("return-refund-method", "return.refund.", REFUNDS)),
      hasPrinter()
        ? el("label", { class: "inline" }, el("input", { type: "checkbox", id: "print-receipt", checked: true }), " " + t("return.print_receipt"))
        : null,
      el("div", { id: "return-decision", hidden: true, "aria-live": "polite" }),
      override,
      el("p", { id: "return-error", class: "error", role: "alert", hidden: true }),
      el("div", { class: "actions" },
        el("button", { type: "button", id: "return-check", class: "secondary", on: { click: () => checkReturn(o) } }, t("return.check")),
        el("button", { type: "submit", id: "return-record" }, t("return.record")),
        el("button", { type: "button", class: "secondary", on: { click: () => renderOrder(current) } }, t("handover.cancel"))));
    show($("order-work"), form);
  }

  function clearDecision() {
    const d = $("return-decision");
    if (d) { d.hidden = true; delete d.dataset.allowed; }
  }

  function returnBody(o, withApproval) {
    const v = (id) => ($(id) ? $(id).value : "");
    const lines = [...document.querySelectorAll("input.return-qty")]
      .map((i) => ({ line_no: Number(i.dataset.line), qty: Math.max(0, Math.floor(Number(i.value) || 0)) }))
      .filter((l) => l.qty > 0);
    const b = {
      order_id: o.order_id, lines,
      reason: v("return-reason"), condition: v("return-condition"),
      disposition: v("return-disposition"), refund_method: v("return-refund-method"),
      print_receipt: !!($("print-receipt") && $("print-receipt").checked),
    };
    const reason = v("override-reason").trim();
    if (withApproval && !$("return-override").hidden && reason) {
      b.approval = isManager() ? { reason } : { reason, manager_id: v("override-manager-id").trim(), pin: v("override-manager-pin") };
    }
    return b;
  }

  function renderDecision(c) {
    const d = $("return-decision");
    const item = (r, overridden) => el("li", { "data-code": r.code, class: overridden ? "overridden" : "blocking" },
      el("strong", {}, tOr("return.why." + r.code, r.text)),
      strings["return.why." + r.code] ? el("span", { class: "meta" }, " " + r.text) : null,
      overridden ? el("span", { class: "meta" }, " (" + t("return.approved") + ")") : null);
    show(d,
      el("p", { class: c.allowed ? "ok" : "error" },
        c.allowed ? t("return.allowed") + " · " + t("return.refund") + ": " + money(c.refund_minor, c.currency) : t("return.refused")),
      c.blocking.length || c.overridden.length
        ? el("ul", {}, c.blocking.map((r) => item(r, false)), c.overridden.map((r) => item(r, true)))
        : null,
      !c.allowed && !c.manager_can_approve ? el("p", { class: "meta" }, t("return.no_override")) : null);
    d.dataset.allowed = c.allowed ? "true" : "false";
    $("return-override").hidden = c.allowed ? c.overridden.length === 0 : !c.manager_can_approve;
  }

  function returnError(text) {
    const e = $("return-error");
    e.textContent = text || "";
    e.hidden = !text;
  }

  async function checkReturn(o) {
    returnError("");
    try { renderDecision(await api("POST", "/api/v1/returns/check", returnBody(o, true))); }
    catch (ex) { returnError(ex.message); }
  }

  async function recordReturn(o) {
    returnError("");
    const b = returnBody(o, true);
    if (!b.lines.length) { returnError(t("return.no_lines")); return; }
    try {
      const done = await api("POST", "/api/v1/returns", b);
      const fresh = await api("GET", "/api/v1/orders/" + encodeURIComponent(o.order_id)).catch(() => o);
      renderOrder(fresh);
      show($("order-work"), el("p", { id: "return-result", class: "ok", role: "status", "data-return-id": done.return_id },
        t("return.recorded") + " " + done.return_id + " · " + t("return.refund") + ": " + money(done.refund_minor, done.currency)
        + " · " + tOr("return.refund." + b.refund_method, b.refund_method) + ". "
        + (isOnline() ? t("handover.sent") : t("handover.queued"))
        + (done.printed ? " " + t("return.printed") : "")));
    } catch (ex) {
      if (ex.status === 409 && ex.data && ex.data.check) renderDecision(ex.data.check);
      returnError(ex.message);
    }
  }

  // The order on screen changed elsewhere (kiosk check-in, the cloud): show it
  // as it is now, unless the associate is in the middle of working on it.
  async function refreshCurrentOrder() {
    if (!current || $("order").hidden || handover || $("return-form")) return;
    const id = current.order_id;
    let fresh;
    try { fresh = await api("GET", "/api/v1/orders/" + encodeURIComponent(id)); } catch (_) { return; /* keep what is shown */ }
    if (!current || current.order_id !== id || handover || $("return-form")) return;
    // The outcome of what the associate just did stays on screen.
    const outcome = $("handover-result") || $("return-result");
    renderOrder(fresh);
    if (outcome) show($("order-work"), outcome);
  }

  async function openOrder(id) {
    try { renderOrder(await api("GET", "/api/v1/orders/" + encodeURIComponent(id))); } catch (ex) { notice(ex.message); }
  }

  async function openCustomer(id) {
    try { renderPanel(await api("GET", "/api/v1/customers/" + encodeURIComponent(id))); } catch (ex) { notice(ex.message); }
  }

  function notice(text) {
    const n = $("notice");
    if (!text) { n.hidden = true; n.textContent = ""; return; }
    n.textContent = text;
    n.hidden = false;
  }

  async function loadQueue(flashOrder) {
    let entries;
    try { entries = await api("GET", "/api/v1/pickups"); } catch (_) { return; }
    const q = $("queue");
    if (!entries.length) { q.replaceChildren(el("li", { class: "meta" }, t("queue.empty"))); return; }
    q.replaceChildren(...entries.map((e) => {
      const arrived = e.status === "customer_arrived";
      const cls = [arrived ? "arrived" : "", e.overdue ? "overdue" : "", e.order_id === flashOrder ? "flash" : ""].join(" ").trim();
      return el("li", { class: cls, tabindex: 0, "data-order": e.order_id, "data-status": e.status,
        on: { click: () => openOrder(e.order_id), keydown: (ev) => { if (ev.key === "Enter") openOrder(e.order_id); } } },
        el("div", { class: "name" }, e.order_id + (e.customer_name ? " · " + e.customer_name : "")),
        el("div", { class: "meta" },
          (arrived ? t("queue.arrived") : e.overdue ? t("queue.overdue") : t("queue.ready")) + " · " + e.lines + " " + t("queue.lines")));
    }));
  }

  function chime() {
    try {
      const ctx = new (window.AudioContext || window.webkitAudioContext)();
      const osc = ctx.createOscillator();
      osc.frequency.value = 880;
      osc.connect(ctx.destination);
      osc.start();
      osc.stop(ctx.currentTime + 0.25);
    } catch (_) { /* no audio device: the highlight is enough */ }
  }

  function consoleScan(r) {
    notice("");
    switch (r.kind) {
      case "customer": hide($("results")); renderPanel(r.customer); break;
      case "product":
        if (handover && !$("order").hidden) handoverScan(r.gtin, r.product);
        else renderProduct(r.gtin, r.product);
        break;
      case "order": renderOrder(r.order); if (r.order) $("order").scrollIntoView({ block: "nearest" }); break;
      case "unknown_card": notice(t("scan.unknown_card")); break;
      case "payment_card_rejected": notice(t("scan.payment_card")); break;
      case "unreadable": notice(t("scan.unreadable") + ": " + r.message); break;
      default: break;
    }
  }

  function consolePage() {
    $("search").addEventListener("submit", async (e) => {
      e.preventDefault();
      const q = $("q").value.trim();
      const results = $("results");
      try {
        const hits = await api("GET", "/api/v1/customers?q=" + encodeURIComponent(q));
        if (!hits.length) { show(results, el("li", { class: "meta" }, t("search.none"))); return; }
        show(results, hits.map((h) => el("li", {},
          el("button", { type: "button", "data-customer": h.customer_id, on: { click: () => { hide(results); openCustomer(h.customer_id); } } },
            h.display_name + (h.tier ? " · " + h.tier : "") + " · " + h.points + " " + t("customer.points")))));
      } catch (ex) { notice(ex.message); }
    });
    $("sign-out").addEventListener("click", async () => {
      try { await api("DELETE", "/api/v1/session"); } catch (_) { /* signed out anyway */ }
      location.replace("/console/sign-in");
    });
    loadQueue();
    live((msg) => {
      if (msg.type === "scan") consoleScan(msg.result);
      else if (msg.type === "customer_arrived") { loadQueue(msg.order_id); chime(); refreshCurrentOrder(); }
      else if (msg.type === "orders_changed" || msg.type === "resync") { loadQueue(); refreshCurrentOrder(); }
    }, () => location.replace("/console/sign-in"));
  }

  // ---- kiosk ----

  function kioskPage() {
    const idleMs = Number(body.dataset.kioskIdleMs) || 60000;
    let idleTimer = null;
    let identified = false;

    function toAttract() {
      identified = false;
      hide($("me")); hide($("product")); hide($("message"));
      $("done").hidden = true;
      $("attract").hidden = false;
      body.dataset.state = "attract";
    }

    function activity() {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(endSession, idleMs);
    }

    async function endSession() {
      clearTimeout(idleTimer);
      try { await api("POST", "/api/v1/kiosk/end"); } catch (_) { /* the server forgets on its own */ }
      toAttract();
    }

    function message(text, cls) {
      show($("message"), el("p", { class: cls || "" }, text));
    }

    function renderMe(c) {
      identified = true;
      $("attract").hidden = true;
      const list = (items, cartCurrency) => el("div", { class: "grid" }, items.map((w) =>
        itemCard(w.name, w.gtin, [
          el("div", { class: "meta" }, cartCurrency ? w.qty + " × " + money(w.unit_price_minor, cartCurrency) : money(w.price_minor, w.currency)),
          stockLine(w.stock),
        ])));
      show($("me"),
        el("h1", { id: "greeting" }, t("kiosk.hello") + ", " + c.greeting),
        el("p", {}, t("customer.points") + ": " + c.points + (c.tier ? " · " + c.tier : "")),
        el("h2", {}, t("customer.wishlist")),
        c.wishlist.length ? list(c.wishlist) : el("p", { class: "meta" }, t("customer.wishlist_empty")),
        el("h2", {}, t("customer.cart")),
        c.cart && c.cart.lines.length ? list(c.cart.lines, c.cart.currency) : el("p", { class: "meta" }, t("customer.cart_empty")));
      $("done").hidden = false;
      body.dataset.state = "customer";
    }

    function kioskProduct(gtin, p) {
      $("attract").hidden = true;
      renderProduct(gtin, p);
      if (p) {
        $("product").append(identified
          ? el("button", { type: "button", id: "add-wishlist", on: { click: async () => {
              try { renderMe(await api("POST", "/api/v1/kiosk/wishlist", { gtin: p.gtin })); message(t("kiosk.added")); }
              catch (ex) { message(ex.message, "error"); }
            } } }, t("kiosk.add_wishlist"))
          : el("p", { class: "meta" }, t("kiosk.identify_to_add")));
      }
      $("done").hidden = false;
      if (!identified) body.dataset.state = "product";
    }

    $("done").addEventListener("click", endSession);
    for (const ev of ["pointerdown", "keydown"]) document.addEventListener(ev, activity);
    // A page restored from the back/forward cache must not show the last shopper.
    window.addEventListener("pageshow", (e) => { if (e.persisted) location.reload(); });
    toAttract();

    live((msg) => {
      if (msg.type === "kiosk_reset") { toAttract(); return; }
      if (msg.type === "kiosk_customer") { hide($("message")); hide($("product")); renderMe(msg.customer); activity(); return; }
      if (msg.type !== "kiosk_scan") return;
      activity();
      const r = msg.result;
      switch (r.kind) {
        case "product": kioskProduct(r.gtin, r.product); break;
        case "checked_in":
          $("attract").hidden = true;
          message(t("kiosk.checked_in") + (r.greeting ? " " + r.greeting : ""), "ok");
          $("done").hidden = false;
          body.dataset.state = "checked_in";
          break;
        case "check_in_refused": message(t("kiosk.check_in_refused") + ": " + r.reason + " " + t("kiosk.ask_staff"), "error"); break;
        case "unknown_card": message(t("scan.unknown_card") + " " + t("kiosk.ask_staff"), "error"); break;
        case "payment_card_rejected": message(t("scan.payment_card"), "error"); break;
        default: message(t("scan.unreadable"), "error"); break;
      }
    });
  }

  // ---- demo: inject a scan ----

  function demoPage() {
    $("scan").addEventListener("submit", async (e) => {
      e.preventDefault();
      const out = $("scan-result");
      try {
        await api("POST", "/api/v1/scans", { screen: $("scan-to").value, data: $("scan-data").value });
        out.textContent = "✓ " + $("scan-data").value;
        $("scan-data").value = "";
      } catch (ex) { out.textContent = t("error.generic") + ": " + ex.message; }
    });
  }

  if (page === "signin") signIn();
  else if (page === "console") consolePage();
  else if (page === "kiosk") kioskPage();
  else if (page === "demo") demoPage();
})();
