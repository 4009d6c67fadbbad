//! The OpenAPI 3.1 document of the JSON API, served at `/api/v1/openapi.json`.
//! A test checks that every route of the router is described here and every path
//! described here is routed. `scripts/api-fuzz.sh` runs Schemathesis against it.

use std::sync::OnceLock;

/// The served document: [`DOCUMENT`] with the answers every route can give
/// added to each operation ([`with_common_responses`]).
pub fn document() -> &'static str {
    static SERVED: OnceLock<String> = OnceLock::new();
    SERVED.get_or_init(|| {
        let mut doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("DOCUMENT is JSON");
        with_common_responses(&mut doc);
        serde_json::to_string(&doc).expect("a JSON value serialises")
    })
}

/// Adds what every operation of its kind can answer, where the operation does not
/// say it already, and gives every error answer the `Error` body:
/// * with a session: 401 (no session, or it expired) and 403 (another role's
///   route, or no or a wrong CSRF token on a state-changing request);
/// * with a body: 400 (not JSON, or not this shape: the error says where) and 413
///   (over the body limit);
/// * every operation: 503 (the local store cannot answer now; the error says why).
fn with_common_responses(doc: &mut serde_json::Value) {
    use serde_json::json;
    let error_body = json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } });
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (_, op) in item.iter_mut() {
            let with_session = op.get("security").is_some();
            let with_body = op.get("requestBody").is_some();
            let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) else {
                continue;
            };
            let mut add = |code: &str, description: &str| {
                responses
                    .entry(code)
                    .or_insert_with(|| json!({ "description": description }));
            };
            if with_session {
                add(
                    "401",
                    "No session, or it expired: sign in again or reload the page",
                );
                add(
                    "403",
                    "This session's role may not use this route, or the CSRF token is missing or wrong",
                );
            }
            if with_body {
                add(
                    "400",
                    "The body is not JSON or not this shape; the error says where",
                );
                add("413", "The body is over the size limit");
            }
            if path != "/api/v1/openapi.json" {
                add(
                    "503",
                    "The local store cannot answer right now; the error says why",
                );
            }
            for (code, response) in responses.iter_mut() {
                if code.starts_with(['4', '5']) && response.get("content").is_none() {
                    response["content"] = error_body.clone();
                }
            }
        }
    }
}

/// The hand-written part of the document.
pub const DOCUMENT: &str = r##"{
  "openapi": "3.1.0",
  "info": {
    "title": "store-agent screens API",
    "version": "1",
    "description": "What the associate console and the customer kiosk do, as JSON. Sessions are cookies (sa_session, HttpOnly, SameSite=Strict) issued by the pages; every state-changing request needs the page's CSRF token in X-CSRF-Token, and an Origin header, when sent, must be this server. Errors are {\"error\": message}."
  },
  "components": {
    "securitySchemes": {
      "session": { "type": "apiKey", "in": "cookie", "name": "sa_session" },
      "csrf": { "type": "apiKey", "in": "header", "name": "X-CSRF-Token" }
    },
    "schemas": {
      "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
      "Stock": { "type": "object", "properties": {
        "on_hand": { "type": "integer" }, "reserved_bopis": { "type": "integer" }, "available": { "type": "integer" },
        "aisle": { "type": ["string", "null"] }, "bin": { "type": ["string", "null"] } } },
      "NearbyStore": { "type": "object", "properties": {
        "store_id": { "type": "string" }, "name": { "type": "string" }, "available": { "type": "integer" },
        "distance_m": { "type": ["integer", "null"] } } },
      "Product": { "type": "object", "properties": {
        "gtin": { "type": "string" }, "sku": { "type": "string" }, "name": { "type": "string" },
        "brand": { "type": ["string", "null"] }, "price_minor": { "type": "integer" }, "currency": { "type": "string" },
        "department": { "type": ["string", "null"] }, "attributes_json": { "type": "string" },
        "stock": { "oneOf": [{ "$ref": "#/components/schemas/Stock" }, { "type": "null" }] } } },
      "Order": { "type": "object", "properties": {
        "order_id": { "type": "string" }, "kind": { "type": "string" }, "status": { "type": "string" },
        "currency": { "type": "string" }, "total_minor": { "type": "integer" }, "placed_at_ms": { "type": "integer" },
        "pickup_deadline_ms": { "type": ["integer", "null"] }, "lines": { "type": "array", "items": { "type": "object" } } } },
      "Customer": { "type": "object", "description": "Profile, wishlist with stock here, online cart, open BOPIS orders.",
        "properties": { "profile": { "type": "object" }, "wishlist": { "type": "array" }, "cart": { "type": ["object", "null"] },
          "open_orders": { "type": "array", "items": { "$ref": "#/components/schemas/Order" } },
          "recent_orders": { "type": "array", "items": { "$ref": "#/components/schemas/Order" } },
          "recent_purchases": { "type": "array", "items": { "type": "object" } } } },
      "KioskCustomer": { "type": "object", "description": "Masked: first name and last initial, no contact data.",
        "properties": { "greeting": { "type": "string" }, "tier": { "type": ["string", "null"] }, "points": { "type": "integer" },
          "wishlist": { "type": "array" }, "cart": { "type": ["object", "null"] } } },
      "HandOver": { "type": "object", "required": ["id_checked"], "properties": {
        "refused_lines": { "type": "array", "items": { "type": "integer", "minimum": 0 } },
        "id_checked": { "type": "boolean" }, "print_slip": { "type": "boolean" } } },
      "Return": { "type": "object", "required": ["order_id", "lines"], "properties": {
        "order_id": { "type": "string" },
        "lines": { "type": "array", "items": { "type": "object", "required": ["line_no", "qty"],
          "properties": { "line_no": { "type": "integer", "minimum": 0 }, "qty": { "type": "integer", "minimum": 0 } } } },
        "reason": { "enum": ["wrong_size", "not_as_described", "defective", "damaged_in_transit", "changed_mind", "other"] },
        "condition": { "enum": ["unopened", "like_new", "used", "damaged"] },
        "disposition": { "enum": ["restock", "damaged"] },
        "refund_method": { "enum": ["original_tender", "gift_card", "store_credit"] },
        "approval": { "type": "object", "required": ["reason"], "description": "A manager's override: the signed-in manager, or manager_id and pin",
          "properties": { "manager_id": { "type": "string" }, "pin": { "type": "string" }, "reason": { "type": "string" } } },
        "print_receipt": { "type": "boolean" } } },
      "ReturnCheck": { "type": "object", "properties": {
        "allowed": { "type": "boolean" },
        "blocking": { "type": "array", "items": { "$ref": "#/components/schemas/ReturnReason" } },
        "overridden": { "type": "array", "items": { "$ref": "#/components/schemas/ReturnReason" } },
        "refund_minor": { "type": "integer" }, "currency": { "type": "string" },
        "manager_can_approve": { "type": "boolean" }, "offline_limit_exceeded": { "type": "boolean" } } },
      "ReturnReason": { "type": "object", "properties": {
        "code": { "type": "string" }, "text": { "type": "string" }, "overridable": { "type": "boolean" } } },
      "Status": { "type": "object", "properties": {
        "online": { "type": "boolean" }, "since_ms": { "type": ["integer", "null"] }, "data_as_of_ms": { "type": ["integer", "null"] },
        "events_waiting": { "type": "integer" }, "devices_total": { "type": "integer" }, "devices_connected": { "type": "integer" } } }
    }
  },
  "paths": {
    "/api/v1/session": {
      "get": { "summary": "Who this session is", "responses": { "200": { "description": "role: none, anonymous, staff or kiosk; the associate when staff" } } },
      "post": { "summary": "Sign in with associate id and PIN", "security": [{ "session": [], "csrf": [] }],
        "requestBody": { "content": { "application/json": { "schema": { "type": "object", "required": ["associate_id", "pin"],
          "properties": { "associate_id": { "type": "string" }, "pin": { "type": "string" } } } } } },
        "responses": { "200": { "description": "Signed in; a new session cookie is set" }, "401": { "description": "Wrong id or PIN" },
          "429": { "description": "Too many wrong PINs for this associate; locked for five minutes" } } },
      "delete": { "summary": "Sign out", "security": [{ "session": [], "csrf": [] }], "responses": { "204": { "description": "Signed out" } } }
    },
    "/api/v1/status": { "get": { "summary": "The status bar: online/offline since, data age, events waiting, devices",
      "security": [{ "session": [] }], "responses": { "200": { "description": "Status", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Status" } } } } } } },
    "/api/v1/customers": { "get": { "summary": "Search customers by name, e-mail, phone or the phone's last 4 digits (staff)", "security": [{ "session": [] }],
      "parameters": [{ "name": "q", "in": "query", "required": true, "description": "Text with @: an e-mail address; exactly 4 digits: the phone's last four; 7 or more digits (with +, spaces, dashes): a phone number; anything else: the start of a name", "schema": { "type": "string", "minLength": 2, "maxLength": 100 } }],
      "responses": { "200": { "description": "Up to 20 customers" }, "400": { "description": "q is missing, or not 2 to 100 characters" },
        "403": { "description": "Not a staff session" } } } },
    "/api/v1/customers/{id}": { "get": { "summary": "The customer panel (staff)", "security": [{ "session": [] }],
      "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
      "responses": { "200": { "description": "Customer", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Customer" } } } },
        "403": { "description": "Not a staff session (kiosks are refused)" }, "404": { "description": "Not in this store's data" } } } },
    "/api/v1/products/{gtin}": { "get": { "summary": "A product by any GTIN form, with stock and aisle here", "security": [{ "session": [] }],
      "parameters": [{ "name": "gtin", "in": "path", "required": true, "schema": { "type": "string" } }],
      "responses": { "200": { "description": "Product", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Product" } } } },
        "400": { "description": "Not a valid GTIN" }, "404": { "description": "Not in the catalogue" } } } },
    "/api/v1/products/{gtin}/nearby": { "get": { "summary": "The product's stock in nearby stores, asked of the cloud now (staff; online only)", "security": [{ "session": [] }],
      "parameters": [{ "name": "gtin", "in": "path", "required": true, "schema": { "type": "string" } }],
      "responses": { "200": { "description": "Stores, nearest first", "content": { "application/json": { "schema": { "type": "array", "items": { "$ref": "#/components/schemas/NearbyStore" } } } } },
        "400": { "description": "Not a valid GTIN" }, "403": { "description": "Not a staff session" }, "503": { "description": "The store is offline or the cloud did not answer in time" } } } },
    "/api/v1/pickups": { "get": { "summary": "BOPIS orders waiting for pickup, arrived customers first (staff)", "security": [{ "session": [] }],
      "responses": { "200": { "description": "Queue entries" } } } },
    "/api/v1/orders/{id}": { "get": { "summary": "An online order with its lines (staff)", "security": [{ "session": [] }],
      "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
      "responses": { "200": { "description": "Order", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Order" } } } }, "404": { "description": "Unknown order" } } } },
    "/api/v1/orders/{id}/arrived": { "post": { "summary": "The BOPIS customer is at the counter (queued for the cloud as customer_arrived) (staff)",
      "security": [{ "session": [], "csrf": [] }],
      "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
      "responses": { "200": { "description": "The order as it is now", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Order" } } } },
        "404": { "description": "Unknown order" }, "409": { "description": "Not allowed in the order's status" } } } },
    "/api/v1/orders/{id}/handover": { "post": { "summary": "Hand a BOPIS order over, in full, in part (refused lines) or refused (every line refused); queued for the cloud (staff)",
      "security": [{ "session": [], "csrf": [] }],
      "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
      "requestBody": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/HandOver" } } } },
      "responses": { "200": { "description": "Recorded", "content": { "application/json": { "schema": { "type": "object",
          "properties": { "order": { "$ref": "#/components/schemas/Order" }, "printed": { "type": "boolean" } } } } } },
        "400": { "description": "id_checked is not true, or the body is malformed" }, "404": { "description": "Unknown order" },
        "409": { "description": "Not allowed in the order's status" } } } },
    "/api/v1/returns/check": { "post": { "summary": "What the return policy and the offline limit say about a BORIS return, without recording it (staff)",
      "security": [{ "session": [], "csrf": [] }],
      "requestBody": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Return" } } } },
      "responses": { "200": { "description": "The decision", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ReturnCheck" } } } },
        "401": { "description": "Manager ID or PIN wrong" }, "403": { "description": "The approver is not a manager" }, "404": { "description": "Unknown order" },
        "429": { "description": "Too many wrong PINs for this manager" } } } },
    "/api/v1/returns": { "post": { "summary": "Record a BORIS return (queued for the cloud) and print its receipt when asked (staff)",
      "security": [{ "session": [], "csrf": [] }],
      "requestBody": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Return" } } } },
      "responses": { "201": { "description": "Recorded", "content": { "application/json": { "schema": { "type": "object",
          "properties": { "return_id": { "type": "string" }, "refund_minor": { "type": "integer" }, "currency": { "type": "string" },
            "overridden": { "type": "array", "items": { "type": "string" } }, "printed": { "type": "boolean" } } } } } },
        "400": { "description": "A code is not one of the listed values, or the body is malformed" },
        "401": { "description": "Manager ID or PIN wrong" }, "403": { "description": "The approver is not a manager" }, "404": { "description": "Unknown order" },
        "409": { "description": "The policy refuses the return; the body has error and check (a ReturnCheck)" },
        "429": { "description": "Too many wrong PINs for this manager" } } } },
    "/api/v1/kiosk/me": { "get": { "summary": "The customer who identified at this kiosk (masked)", "security": [{ "session": [] }],
      "responses": { "200": { "description": "Masked customer", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/KioskCustomer" } } } },
        "403": { "description": "Not a kiosk session" }, "404": { "description": "Nobody identified, or the idle timeout passed" } } } },
    "/api/v1/kiosk/wishlist": { "post": { "summary": "Add a product to the identified customer's wishlist (queued for the cloud)",
      "security": [{ "session": [], "csrf": [] }],
      "requestBody": { "content": { "application/json": { "schema": { "type": "object", "required": ["gtin"], "properties": { "gtin": { "type": "string" } } } } } },
      "responses": { "200": { "description": "The updated masked customer" }, "404": { "description": "Nobody identified" } } } },
    "/api/v1/kiosk/end": { "post": { "summary": "End the shopper's session: the kiosk forgets the customer", "security": [{ "session": [], "csrf": [] }],
      "responses": { "204": { "description": "Forgotten" } } } },
    "/api/v1/scans": { "post": { "summary": "Inject a scan as if from a scanner feeding the console or the kiosk (demo mode or screens.scan_injection only)",
      "security": [{ "session": [], "csrf": [] }],
      "requestBody": { "content": { "application/json": { "schema": { "type": "object", "required": ["screen", "data"],
        "properties": { "screen": { "enum": ["console", "kiosk"] }, "data": { "type": "string" } } } } } },
      "responses": { "202": { "description": "Delivered to the scan pipeline" }, "404": { "description": "Scan injection is off" } } } },
    "/api/v1/events": { "get": { "summary": "Live events (Server-Sent Events): scans, check-ins, queue changes, status; kiosk_reset at the kiosk idle timeout",
      "security": [{ "session": [] }], "responses": { "200": { "description": "text/event-stream of JSON objects with a type" } } } },
    "/api/v1/pos/transactions": { "post": { "summary": "Record a POS transaction (POSLog XML, or JSON) from POS software on this device; answers after the transaction and its outbox row are committed",
      "requestBody": { "content": { "application/xml": { "schema": { "type": "string" } }, "application/json": { "schema": { "type": "object" } } } },
      "responses": { "201": { "description": "Recorded (or already recorded: same idempotency key)" }, "400": { "description": "Malformed; kept in the rejected folder with the reason" },
        "403": { "description": "Not from this device" }, "415": { "description": "Neither XML nor JSON (Content-Type)" },
        "507": { "description": "The device's disk is full: nothing was recorded; send it again when space is freed" } } } },
    "/api/v1/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3.1" } } } }
  }
}"##;

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_valid_json_and_names_every_api_route() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let sources = [
            include_str!("api.rs"),
            include_str!("events.rs"),
            include_str!("counter.rs"),
        ];
        let mut routed = Vec::new();
        for src in sources {
            for (i, _) in src.match_indices(".route(") {
                let rest = src[i + ".route(".len()..].trim_start();
                if let Some(path) = rest.strip_prefix('"').filter(|r| r.starts_with("/api/v1/")) {
                    routed.push(path[..path.find('"').unwrap()].to_string());
                }
            }
        }
        for r in &routed {
            assert!(paths.contains_key(r), "{r} is routed but not documented");
        }
        for p in paths.keys() {
            assert!(
                routed.contains(p) || p == "/api/v1/pos/transactions",
                "{p} is documented but not routed by kiosk-ui"
            );
        }
    }

    #[test]
    fn the_served_document_adds_the_common_answers_with_the_error_body() {
        let doc: serde_json::Value = serde_json::from_str(super::document()).unwrap();
        let op = |path: &str, method: &str| doc["paths"][path][method]["responses"].clone();
        // A staff route with a body: session, CSRF and body errors, all with Error bodies.
        let handover = op("/api/v1/orders/{id}/handover", "post");
        for code in ["400", "401", "403", "404", "409", "413", "503"] {
            assert_eq!(
                handover[code]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error",
                "{code}: {handover}"
            );
        }
        // What the operation said itself is kept.
        assert_eq!(
            handover["400"]["description"],
            "id_checked is not true, or the body is malformed"
        );
        // No session, no body: no 401/403/400.
        let pos = op("/api/v1/pos/transactions", "post");
        assert!(pos["401"].is_null() && pos["415"].is_object(), "{pos}");
        let openapi = op("/api/v1/openapi.json", "get");
        assert_eq!(openapi.as_object().unwrap().len(), 1, "{openapi}");
        // Success answers get no error body.
        assert!(handover["200"]["content"]["application/json"]["schema"]["$ref"].is_null());
    }

    #[test]
    fn the_return_codes_are_the_ones_the_server_accepts() {
        use crate::counter::{DISPOSITIONS, REFUND_METHODS, RETURN_CONDITIONS, RETURN_REASONS};
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        let props = &doc["components"]["schemas"]["Return"]["properties"];
        for (field, codes) in [
            ("reason", RETURN_REASONS),
            ("condition", RETURN_CONDITIONS),
            ("disposition", DISPOSITIONS),
            ("refund_method", REFUND_METHODS),
        ] {
            let listed: Vec<&str> = props[field]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{field} has no enum"))
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(listed, codes, "{field}");
        }
    }
}
