//! Every string the screens show, in one table per language (English, German).
//!
//! The server renders page shells with [`t`]; the pages' script gets the whole
//! table of its language as JSON in the page and looks strings up by key. A test
//! checks that every key the script uses exists here, so a missing translation
//! fails the build's tests instead of showing a key on a shop floor.

use serde::Serialize;

/// A language of the screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// English.
    #[default]
    En,
    /// German.
    De,
}

impl Lang {
    /// The BCP 47 tag for `<html lang>`.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
        }
    }

    /// This language's one of a string's translations.
    fn pick(self, en: &'static str, de: &'static str) -> &'static str {
        match self {
            Lang::En => en,
            Lang::De => de,
        }
    }

    /// The best match for an `Accept-Language` header, or `fallback`.
    pub fn negotiate(accept_language: Option<&str>, fallback: Lang) -> Lang {
        let Some(header) = accept_language else {
            return fallback;
        };
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut fields = part.trim().split(';');
            let tag = fields.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = fields
                .find_map(|f| f.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()))
                .unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("en") => Lang::En,
                Some("de") => Lang::De,
                _ => continue,
            };
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map_or(fallback, |(_, l)| l)
    }
}

/// `(key, English, German)`.
const STRINGS: &[(&str, &str, &str)] = &[
    ("app.console", "Associate console", "Mitarbeiterkonsole"),
    ("app.kiosk", "Store kiosk", "Kunden-Terminal"),
    ("signin.title", "Sign in", "Anmelden"),
    ("signin.associate_id", "Associate ID", "Mitarbeiternummer"),
    ("signin.pin", "PIN", "PIN"),
    ("signin.submit", "Sign in", "Anmelden"),
    (
        "signin.failed",
        "Associate ID or PIN is not right.",
        "Mitarbeiternummer oder PIN ist falsch.",
    ),
    (
        "signin.expired",
        "You were signed out after a period of inactivity.",
        "Sie wurden nach längerer Inaktivität abgemeldet.",
    ),
    ("signout", "Sign out", "Abmelden"),
    ("status.online", "Online", "Online"),
    ("status.offline_since", "Offline since", "Offline seit"),
    (
        "status.never_connected",
        "Not yet connected to the cloud",
        "Noch nicht mit der Cloud verbunden",
    ),
    ("status.data_as_of", "Data as of", "Datenstand"),
    (
        "status.no_data",
        "No data from the cloud yet",
        "Noch keine Daten aus der Cloud",
    ),
    (
        "status.waiting",
        "events waiting to be sent",
        "Ereignisse warten auf Versand",
    ),
    ("status.devices", "devices connected", "Geräte verbunden"),
    (
        "status.live_lost",
        "Live updates interrupted, reconnecting…",
        "Live-Aktualisierung unterbrochen, verbinde neu…",
    ),
    (
        "search.placeholder",
        "Name, e-mail, phone or its last 4 digits",
        "Name, E-Mail, Telefon oder dessen letzte 4 Ziffern",
    ),
    ("search.submit", "Search", "Suchen"),
    ("search.none", "No customer found.", "Kein Kunde gefunden."),
    (
        "scan.hint",
        "Scan a loyalty card, a product or a pickup code.",
        "Kundenkarte, Artikel oder Abholcode scannen.",
    ),
    (
        "scan.unknown_card",
        "This loyalty card is not known in this store.",
        "Diese Kundenkarte ist in dieser Filiale nicht bekannt.",
    ),
    (
        "scan.payment_card",
        "That was a payment card. Nothing of it was kept; please scan the loyalty card.",
        "Das war eine Zahlungskarte. Nichts davon wurde gespeichert; bitte die Kundenkarte scannen.",
    ),
    (
        "scan.unreadable",
        "The code could not be read",
        "Der Code konnte nicht gelesen werden",
    ),
    (
        "scan.order_not_found",
        "No order here for this code.",
        "Keine Bestellung zu diesem Code in dieser Filiale.",
    ),
    ("customer.title", "Customer", "Kunde"),
    ("customer.tier", "Tier", "Stufe"),
    ("customer.points", "Points", "Punkte"),
    ("customer.preferences", "Preferences", "Vorlieben"),
    (
        "customer.preferences_hidden",
        "The customer has not consented to personalisation.",
        "Der Kunde hat der Personalisierung nicht zugestimmt.",
    ),
    ("customer.wishlist", "Wishlist", "Wunschliste"),
    (
        "customer.wishlist_empty",
        "The wishlist is empty.",
        "Die Wunschliste ist leer.",
    ),
    ("customer.cart", "Online cart", "Online-Warenkorb"),
    ("customer.cart_empty", "No online cart.", "Kein Online-Warenkorb."),
    ("customer.orders", "Open orders", "Offene Bestellungen"),
    (
        "customer.orders_none",
        "No open orders.",
        "Keine offenen Bestellungen.",
    ),
    ("customer.close", "Close", "Schließen"),
    ("product.title", "Product", "Artikel"),
    (
        "product.not_found",
        "This product is not in the catalogue here.",
        "Dieser Artikel ist hier nicht im Sortiment.",
    ),
    ("product.price", "Price", "Preis"),
    ("product.in_stock", "in stock", "vorrätig"),
    ("product.out_of_stock", "Out of stock here", "Hier nicht vorrätig"),
    (
        "product.no_stock_record",
        "No stock information",
        "Keine Bestandsinformation",
    ),
    ("product.aisle", "Aisle", "Gang"),
    ("product.nearby", "Nearby stores", "Filialen in der Nähe"),
    (
        "product.nearby_loading",
        "Asking nearby stores…",
        "Frage Filialen in der Nähe…",
    ),
    (
        "product.nearby_offline",
        "Stock in nearby stores is shown while the store is online.",
        "Bestand in Filialen in der Nähe wird nur online angezeigt.",
    ),
    (
        "product.nearby_none",
        "No nearby store reported stock.",
        "Keine Filiale in der Nähe meldet Bestand.",
    ),
    ("product.out_of_stock_there", "out of stock", "nicht vorrätig"),
    ("queue.title", "Pickups", "Abholungen"),
    (
        "queue.empty",
        "No orders waiting for pickup.",
        "Keine Bestellungen zur Abholung.",
    ),
    ("queue.arrived", "Customer is here", "Kunde ist da"),
    ("queue.overdue", "Overdue", "Überfällig"),
    ("queue.ready", "Ready", "Bereit"),
    ("queue.lines", "items", "Artikel"),
    (
        "queue.checked_in",
        "checked in for pickup",
        "hat sich zur Abholung angemeldet",
    ),
    ("order.title", "Order", "Bestellung"),
    ("order.mark_arrived", "Customer is here", "Kunde ist da"),
    ("order.pickup_by", "pick up by", "abholen bis"),
    ("order.received", "received", "erhalten"),
    ("order.returned", "returned", "zurückgegeben"),
    ("order.refused", "refused", "abgelehnt"),
    ("order.final_sale", "final sale", "vom Umtausch ausgeschlossen"),
    ("order.status.ready_for_pickup", "Ready for pickup", "Abholbereit"),
    (
        "order.status.customer_arrived",
        "Customer is here",
        "Kunde ist da",
    ),
    ("order.status.handed_over", "Handed over", "Übergeben"),
    (
        "order.status.partially_handed_over",
        "Partly handed over",
        "Teilweise übergeben",
    ),
    (
        "order.status.refused",
        "Refused by the customer",
        "Vom Kunden abgelehnt",
    ),
    (
        "order.status.expired",
        "Not collected in time",
        "Nicht rechtzeitig abgeholt",
    ),
    ("order.status.cancelled", "Cancelled", "Storniert"),
    ("order.status.delivered", "Delivered", "Zugestellt"),
    ("handover.start", "Hand over", "Übergeben"),
    ("handover.title", "Hand-over", "Übergabe"),
    (
        "handover.scan_each",
        "Scan every item as you hand it over. Tick the items the customer does not take.",
        "Jeden Artikel bei der Übergabe scannen. Artikel, die der Kunde nicht nimmt, abhaken.",
    ),
    ("handover.refused", "Refused", "Abgelehnt"),
    ("handover.scanned", "scanned", "gescannt"),
    ("handover.verified", "checked", "geprüft"),
    (
        "handover.wrong_item",
        "Not part of this order",
        "Gehört nicht zu dieser Bestellung",
    ),
    (
        "handover.already_scanned",
        "Already scanned as often as ordered",
        "Bereits so oft gescannt wie bestellt",
    ),
    (
        "handover.id_checked",
        "I checked the customer's ID",
        "Ich habe den Ausweis des Kunden geprüft",
    ),
    (
        "handover.print_slip",
        "Print the pickup slip",
        "Abholbeleg drucken",
    ),
    (
        "handover.no_printer",
        "No receipt printer at this counter.",
        "An dieser Kasse ist kein Bondrucker.",
    ),
    ("handover.confirm", "Confirm hand-over", "Übergabe bestätigen"),
    (
        "handover.confirm_refused",
        "Record the refusal",
        "Ablehnung erfassen",
    ),
    ("handover.cancel", "Cancel", "Abbrechen"),
    (
        "handover.sent",
        "Sent to the online shop.",
        "An den Online-Shop gemeldet.",
    ),
    (
        "handover.queued",
        "The store is offline: saved here and sent when the connection is back.",
        "Die Filiale ist offline: hier gespeichert, wird gesendet, sobald die Verbindung zurück ist.",
    ),
    ("handover.printed", "Slip printed.", "Beleg gedruckt."),
    ("return.start", "Return items", "Rückgabe"),
    ("return.title", "Return", "Rückgabe"),
    ("return.reason", "Reason", "Grund"),
    ("return.reason.wrong_size", "Wrong size", "Falsche Größe"),
    (
        "return.reason.not_as_described",
        "Not as described",
        "Nicht wie beschrieben",
    ),
    ("return.reason.defective", "Defective", "Defekt"),
    (
        "return.reason.damaged_in_transit",
        "Damaged in transit",
        "Beim Versand beschädigt",
    ),
    (
        "return.reason.changed_mind",
        "Changed their mind",
        "Nicht mehr gewünscht",
    ),
    ("return.reason.other", "Other", "Sonstiges"),
    ("return.condition", "Condition", "Zustand"),
    ("return.condition.unopened", "Unopened", "Ungeöffnet"),
    ("return.condition.like_new", "Like new", "Wie neu"),
    ("return.condition.used", "Used", "Gebraucht"),
    ("return.condition.damaged", "Damaged", "Beschädigt"),
    ("return.disposition", "Goes to", "Verbleib"),
    (
        "return.disposition.restock",
        "Back to stock",
        "Zurück in den Bestand",
    ),
    ("return.disposition.damaged", "Damaged goods", "Schadware"),
    ("return.refund_method", "Refund to", "Erstattung auf"),
    (
        "return.refund.original_tender",
        "Original payment",
        "Ursprüngliche Zahlungsart",
    ),
    ("return.refund.gift_card", "Gift card", "Geschenkkarte"),
    ("return.refund.store_credit", "Store credit", "Guthaben"),
    (
        "return.print_receipt",
        "Print the return receipt",
        "Rückgabebeleg drucken",
    ),
    ("return.check", "Check the policy", "Richtlinie prüfen"),
    ("return.record", "Record the return", "Rückgabe erfassen"),
    (
        "return.allowed",
        "The return is allowed",
        "Die Rückgabe ist erlaubt",
    ),
    (
        "return.refused",
        "The return is not allowed",
        "Die Rückgabe ist nicht erlaubt",
    ),
    ("return.refund", "Refund", "Erstattung"),
    (
        "return.approved",
        "approved by a manager",
        "von der Filialleitung genehmigt",
    ),
    (
        "return.no_override",
        "A manager cannot approve this.",
        "Dies kann auch die Filialleitung nicht genehmigen.",
    ),
    (
        "return.override",
        "Manager approval",
        "Genehmigung der Filialleitung",
    ),
    (
        "return.override_reason",
        "Reason for the approval",
        "Grund der Genehmigung",
    ),
    (
        "return.you_approve",
        "You are signed in as a manager: your approval is recorded.",
        "Sie sind als Filialleitung angemeldet: Ihre Genehmigung wird erfasst.",
    ),
    ("return.manager_id", "Manager ID", "Kennung der Filialleitung"),
    ("return.manager_pin", "Manager PIN", "PIN der Filialleitung"),
    (
        "return.no_lines",
        "Enter how many units of which item come back.",
        "Bitte eingeben, wie viele Stück welches Artikels zurückkommen.",
    ),
    ("return.recorded", "Return recorded:", "Rückgabe erfasst:"),
    ("return.printed", "Receipt printed.", "Beleg gedruckt."),
    (
        "return.why.outside_window",
        "Outside the return window",
        "Außerhalb der Rückgabefrist",
    ),
    (
        "return.why.final_sale",
        "Final-sale item",
        "Vom Umtausch ausgeschlossen",
    ),
    (
        "return.why.exceeds_remaining",
        "More than is left to return",
        "Mehr als noch zurückgegeben werden kann",
    ),
    (
        "return.why.offline_limit",
        "Offline: above the refund limit",
        "Offline: über dem Erstattungslimit",
    ),
    (
        "return.why.not_received",
        "Not yet delivered or picked up",
        "Noch nicht zugestellt oder abgeholt",
    ),
    (
        "return.why.empty_request",
        "No items chosen",
        "Keine Artikel gewählt",
    ),
    (
        "customer.received",
        "Received online orders",
        "Erhaltene Online-Bestellungen",
    ),
    (
        "customer.received_none",
        "No received online orders.",
        "Keine erhaltenen Online-Bestellungen.",
    ),
    (
        "customer.purchases",
        "Purchases in store",
        "Einkäufe in der Filiale",
    ),
    (
        "customer.purchases_none",
        "No purchases in store.",
        "Keine Einkäufe in der Filiale.",
    ),
    ("purchase.kind.sale", "Sale", "Verkauf"),
    ("purchase.kind.return", "Return", "Rückgabe"),
    ("kiosk.attract_title", "Welcome!", "Willkommen!"),
    (
        "kiosk.attract_text",
        "Scan your loyalty card or the QR code from our app to see your wishlist and cart. Scan any product to check its price.",
        "Scannen Sie Ihre Kundenkarte oder den QR-Code aus unserer App, um Wunschliste und Warenkorb zu sehen. Scannen Sie einen Artikel, um den Preis zu prüfen.",
    ),
    (
        "kiosk.pickup_text",
        "Picking up an order? Scan the QR code from your order e-mail.",
        "Sie holen eine Bestellung ab? Scannen Sie den QR-Code aus Ihrer Bestell-E-Mail.",
    ),
    ("kiosk.hello", "Hello", "Hallo"),
    (
        "kiosk.add_wishlist",
        "Add to my wishlist",
        "Auf meine Wunschliste",
    ),
    (
        "kiosk.added",
        "Added to your wishlist.",
        "Zu Ihrer Wunschliste hinzugefügt.",
    ),
    (
        "kiosk.identify_to_add",
        "Scan your loyalty card to save this to your wishlist.",
        "Scannen Sie Ihre Kundenkarte, um dies auf Ihre Wunschliste zu setzen.",
    ),
    ("kiosk.done", "Done", "Fertig"),
    (
        "kiosk.checked_in",
        "Thank you! We're getting your order.",
        "Danke! Wir holen Ihre Bestellung.",
    ),
    (
        "kiosk.check_in_refused",
        "We could not check you in",
        "Die Anmeldung hat nicht geklappt",
    ),
    (
        "kiosk.ask_staff",
        "Please ask a member of staff.",
        "Bitte wenden Sie sich an unser Personal.",
    ),
    ("demo.scan_title", "Demo: inject a scan", "Demo: Scan einspielen"),
    ("demo.scan_to", "Scanner of", "Scanner von"),
    ("demo.scan_send", "Scan", "Scannen"),
    (
        "error.generic",
        "Something went wrong",
        "Etwas ist schiefgelaufen",
    ),
];

/// The string for `key` in `lang`; the key itself if it is missing (a test keeps
/// that from happening).
pub fn t(lang: Lang, key: &str) -> &'static str {
    STRINGS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map_or("?", |(_, en, de)| lang.pick(en, de))
}

/// The whole table of `lang` as a JSON object, for the pages' script.
pub fn table_json(lang: Lang) -> String {
    let map: serde_json::Map<String, serde_json::Value> = STRINGS
        .iter()
        .map(|(k, en, de)| ((*k).to_string(), lang.pick(en, de).into()))
        .collect();
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_every_language_is_complete() {
        let mut seen = std::collections::HashSet::new();
        for (k, en, de) in STRINGS {
            assert!(seen.insert(*k), "duplicate key {k}");
            assert!(
                !en.trim().is_empty() && !de.trim().is_empty(),
                "{k} is missing a language"
            );
        }
    }

    #[test]
    fn every_key_the_script_and_templates_use_exists() {
        let sources = [include_str!("../assets/app.js"), include_str!("pages.rs")];
        let mut missing = Vec::new();
        // The look-up calls: `t("…")` and `t('…')` in the script, `t(lang, "…")` in
        // the templates.
        let openers = [("t(\"", '"'), ("t('", '\''), ("t(lang, \"", '"')];
        for src in sources {
            for (opener, quote) in openers {
                for (i, _) in src.match_indices(opener) {
                    // Only the look-up function itself, not `expect("…")` or `alert('…')`.
                    let before = src[..i].chars().next_back().unwrap_or(' ');
                    if before.is_alphanumeric() || before == '_' || before == '.' {
                        continue;
                    }
                    let rest = &src[i + opener.len()..];
                    let key = &rest[..rest.find(quote).unwrap_or(rest.len())];
                    if !STRINGS.iter().any(|(k, _, _)| *k == key) {
                        missing.push(key.to_string());
                    }
                }
            }
        }
        assert!(missing.is_empty(), "keys without strings: {missing:?}");
    }

    #[test]
    fn every_code_the_console_shows_has_its_string() {
        let mut missing = Vec::new();
        let lists: [(&str, &[&str]); 4] = [
            ("return.reason.", crate::counter::RETURN_REASONS),
            ("return.condition.", crate::counter::RETURN_CONDITIONS),
            ("return.disposition.", crate::counter::DISPOSITIONS),
            ("return.refund.", crate::counter::REFUND_METHODS),
        ];
        for (prefix, codes) in lists {
            for code in codes {
                let key = format!("{prefix}{code}");
                if !STRINGS.iter().any(|(k, _, _)| *k == key) {
                    missing.push(key);
                }
            }
        }
        // The order statuses the agent knows (agent/src/domain/bopis.rs), as the
        // script looks them up.
        for status in [
            "ready_for_pickup",
            "customer_arrived",
            "handed_over",
            "partially_handed_over",
            "refused",
            "expired",
            "cancelled",
        ] {
            let key = format!("order.status.{status}");
            if !STRINGS.iter().any(|(k, _, _)| *k == key) {
                missing.push(key);
            }
        }
        assert!(missing.is_empty(), "codes without strings: {missing:?}");
    }

    #[test]
    fn accept_language_picks_the_preferred_known_language() {
        assert_eq!(
            Lang::negotiate(Some("de-DE,de;q=0.9,en;q=0.8"), Lang::En),
            Lang::De
        );
        assert_eq!(Lang::negotiate(Some("fr-FR, en;q=0.5"), Lang::De), Lang::En);
        assert_eq!(Lang::negotiate(Some("fr"), Lang::De), Lang::De);
        assert_eq!(Lang::negotiate(None, Lang::En), Lang::En);
        assert_eq!(Lang::negotiate(Some("en;q=0.2, de;q=0.7"), Lang::En), Lang::De);
    }
}
