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
    show($("panel"),
      el("h2", { id: "customer-name" }, p.display_name),
      el("p", {},
        el("span", { id: "customer-tier" }, t("customer.tier") + ": " + (p.tier || "–")), " · ",
        el("span", { id: "customer-points" }, t("customer.points") + ": " + p.points)),
      el("p", { class: "meta", id: "customer-prefs" }, t("customer.preferences") + ": " + prefText),
      el("h3", {}, t("customer.wishlist")), el("div", { id: "wishlist" }, wish),
      el("h3", {}, t("customer.cart")), el("div", { id: "cart" }, cart),
      el("h3", {}, t("customer.orders")), el("div", { id: "open-orders" }, orders),
      el("button", { type: "button", class: "secondary", on: { click: () => hide($("panel")) } }, t("customer.close")));
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
      page === "console" && !isOnline() ? el("p", { class: "meta" }, t("product.nearby_offline")) : null);
  }

  function isOnline() {
    const o = $("status-online");
    return o && o.dataset.online === "true";
  }

  function renderOrder(o) {
    if (!o) { show($("order"), el("p", { class: "error" }, t("scan.order_not_found"))); return; }
    show($("order"),
      el("h2", {}, t("order.title") + " " + o.order_id),
      el("p", { class: "meta" }, o.status + " · " + money(o.total_minor, o.currency) + " · " + when(o.placed_at_ms)),
      el("ul", {}, o.lines.map((l) => el("li", { "data-line": l.line_no }, l.qty_ordered + " × " + l.name + " (" + l.gtin + ")"))));
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
      case "product": renderProduct(r.gtin, r.product); break;
      case "order": renderOrder(r.order); break;
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
      else if (msg.type === "customer_arrived") { loadQueue(msg.order_id); chime(); }
      else if (msg.type === "orders_changed" || msg.type === "resync") loadQueue();
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
