//! Tests of the store through its public API, with fault injection underneath.

use super::*;
use crate::domain::bopis::{OrderEvent, OrderStatus};
use crate::domain::returns::{ManagerOverride, Reason, RequestedLine};
use crate::domain::wishlist::WishlistAction;
use crate::events::Captured;
use crate::sample::{self, SampleSpec};
use crate::store::records::{Disposition, OrderUpdate, PosTransaction, ReturnRecord, WishlistEdit};
use crate::store::snapshot::ImportExpectations;

const DAY: i64 = 86_400_000;
const NOW: i64 = 1_790_000_000_000;

fn hasher() -> KeyedHasher {
    sample::demo_hasher()
}

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    spec: SampleSpec,
}

impl Fixture {
    /// A store loaded with a small sample snapshot.
    async fn new() -> Fixture {
        Fixture::with_sample(200, 80).await
    }

    /// A store with a tiny sample, for property tests that build many stores.
    async fn new_small() -> Fixture {
        Fixture::with_sample(10, 10).await
    }

    async fn with_sample(customers: u64, products: u64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = SampleSpec::new(5, customers, products);
        spec.reference_time_ms = NOW;
        let snap = dir.path().join("snap.jsonl");
        sample::write_snapshot(&spec, &hasher(), std::fs::File::create(&snap).unwrap()).unwrap();
        let store = Store::open(StoreOptions::new(dir.path().join("store.db"), hasher())).unwrap();
        store
            .import_snapshot(&snap, ImportExpectations::default())
            .await
            .unwrap();
        Fixture { dir, store, spec }
    }

    /// The first column of the first row of `sql`.
    fn scalar<T: rusqlite::types::FromSql>(&self, sql: &str) -> T {
        self.store
            .reads()
            .with(|c| Ok(c.query_row(sql, [], |r| r.get(0))?))
            .unwrap()
    }

    fn count(&self, sql: &str) -> i64 {
        self.scalar(sql)
    }

    fn outbox_depth(&self) -> i64 {
        self.count("SELECT count(*) FROM outbox")
    }
}

fn pos_tx(seq: i64) -> PosTransaction {
    crate::store::records::example_sale(seq)
}

/// Makes every outbox insert fail, as a full disk or a crash between the two
/// writes would: the state change has already run inside the transaction.
async fn break_outbox(store: &Store) {
    store
        .with_writer(|c| {
            c.execute_batch(
                "CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox
                 BEGIN SELECT RAISE(ABORT, 'injected outbox failure'); END;",
            )?;
            Ok(())
        })
        .await
        .unwrap();
}

async fn repair_outbox(store: &Store) {
    store
        .with_writer(|c| {
            c.execute_batch("DROP TRIGGER fail_outbox")?;
            Ok(())
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn pos_transaction_is_recorded_with_its_outbox_row_once() {
    let f = Fixture::new().await;
    let first = f
        .store
        .record_pos_transaction(Captured::at(NOW, pos_tx(1)))
        .await
        .unwrap();
    assert_eq!(
        first,
        Recorded::New {
            stream: UplinkStream::PosTransactions,
            seq: 1
        }
    );
    // The POS sends the same transaction again (new capture, same natural key).
    let again = f
        .store
        .record_pos_transaction(Captured::at(NOW, pos_tx(1)))
        .await
        .unwrap();
    assert_eq!(again, Recorded::Duplicate);
    // A redelivery of the same captured event.
    let captured = Captured::at(NOW, pos_tx(2));
    assert!(matches!(
        f.store.record_pos_transaction(captured.clone()).await.unwrap(),
        Recorded::New { seq: 2, .. }
    ));
    assert_eq!(
        f.store.record_pos_transaction(captured).await.unwrap(),
        Recorded::Duplicate
    );
    assert_eq!(f.count("SELECT count(*) FROM pos_transactions"), 2);
    assert_eq!(f.count("SELECT count(*) FROM pos_lines"), 4);
    assert_eq!(f.outbox_depth(), 2);
}

#[tokio::test]
async fn bad_pos_transaction_is_refused_with_the_field_named() {
    let f = Fixture::new().await;
    let mut t = pos_tx(1);
    t.business_day = "2026-13-01".into();
    let err = f
        .store
        .record_pos_transaction(Captured::at(NOW, t))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("pos_transaction.business_day"), "{err}");
    let mut t = pos_tx(1);
    t.currency = "euro".into();
    let err = f
        .store
        .record_pos_transaction(Captured::at(NOW, t))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("pos_transaction.currency"), "{err}");
    assert_eq!(f.outbox_depth(), 0);
}

#[tokio::test]
async fn failure_between_state_change_and_outbox_leaves_neither() {
    let f = Fixture::new().await;
    break_outbox(&f.store).await;

    let err = f
        .store
        .record_pos_transaction(Captured::at(NOW, pos_tx(1)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected outbox failure"), "{err}");
    assert_eq!(f.count("SELECT count(*) FROM pos_transactions"), 0);
    assert_eq!(f.count("SELECT count(*) FROM pos_lines"), 0);

    let order = sample::bopis_order_id(0);
    let arrived = OrderUpdate {
        order_id: order.clone(),
        event: OrderEvent::CustomerArrived,
        associate_id: None,
    };
    assert!(
        f.store
            .record_order_event(Captured::at(NOW, arrived.clone()))
            .await
            .is_err()
    );
    let status_sql = format!("SELECT status = 'ready_for_pickup' FROM orders WHERE order_id = '{order}'");
    assert_eq!(f.count(&status_sql), 1, "order state rolled back");

    let ret = return_of_first_line();
    assert!(f.store.record_return(Captured::at(NOW, ret)).await.is_err());
    assert_eq!(f.count("SELECT count(*) FROM returns"), 0);
    assert_eq!(
        f.count("SELECT sum(qty_returned) FROM order_lines WHERE order_id = 'WEB-0000001'"),
        0
    );

    let wish = WishlistEdit {
        customer_id: sample::customer_id(0),
        gtin: sample::product_gtin(f.spec.seed, 3),
        action: WishlistAction::Add,
        channel: "store-console".into(),
    };
    let before = f.count("SELECT count(*) FROM wishlist_items");
    assert!(
        f.store
            .record_wishlist_edit(Captured::at(NOW, wish.clone()))
            .await
            .is_err()
    );
    assert_eq!(f.count("SELECT count(*) FROM wishlist_items"), before);

    assert_eq!(
        f.count("SELECT count(*) FROM outbox_streams"),
        0,
        "no sequence number consumed"
    );
    assert_eq!(f.outbox_depth(), 0);

    // With the fault gone, the same events go through.
    repair_outbox(&f.store).await;
    f.store
        .record_pos_transaction(Captured::at(NOW, pos_tx(1)))
        .await
        .unwrap();
    f.store
        .record_order_event(Captured::at(NOW, arrived))
        .await
        .unwrap();
    f.store
        .record_wishlist_edit(Captured::at(NOW, wish))
        .await
        .unwrap();
    assert_eq!(f.outbox_depth(), 3);
}

#[tokio::test]
async fn failed_state_change_writes_no_outbox_row() {
    let f = Fixture::new().await;
    // Hand-over before check-in is an illegal transition.
    let err = f
        .store
        .record_order_event(Captured::at(
            NOW,
            OrderUpdate {
                order_id: sample::bopis_order_id(0),
                event: OrderEvent::HandOver {
                    refused_lines: vec![],
                },
                associate_id: Some("A001".into()),
            },
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Transition(_)), "{err}");
    assert!(err.to_string().contains("ready_for_pickup"), "{err}");
    let err = f
        .store
        .record_order_event(Captured::at(
            NOW,
            OrderUpdate {
                order_id: "NO-SUCH-ORDER".into(),
                event: OrderEvent::CustomerArrived,
                associate_id: None,
            },
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NO-SUCH-ORDER"), "{err}");
    assert_eq!(f.outbox_depth(), 0);
}

#[tokio::test]
async fn outbox_rows_leave_only_on_acknowledgement_and_seqs_are_never_reused() {
    let f = Fixture::new().await;
    for n in 1..=5 {
        f.store
            .record_pos_transaction(Captured::at(NOW, pos_tx(n)))
            .await
            .unwrap();
    }
    let pending = f
        .store
        .reads()
        .with(|c| outbox::pending(c, UplinkStream::PosTransactions, 10))
        .unwrap();
    assert_eq!(
        pending.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let payload: serde_json::Value = serde_json::from_str(&pending[0].payload).unwrap();
    assert_eq!(payload["sequence_number"], 1);

    assert_eq!(
        f.store
            .acknowledge(UplinkStream::PosTransactions, 3)
            .await
            .unwrap(),
        3
    );
    assert_eq!(f.outbox_depth(), 2);
    // An ack for seqs never sent is refused and deletes nothing.
    assert!(
        f.store
            .acknowledge(UplinkStream::PosTransactions, 9)
            .await
            .is_err()
    );
    assert_eq!(f.outbox_depth(), 2);
    // Repeated (old) acks are harmless.
    assert_eq!(
        f.store
            .acknowledge(UplinkStream::PosTransactions, 3)
            .await
            .unwrap(),
        0
    );

    f.store
        .acknowledge(UplinkStream::PosTransactions, 5)
        .await
        .unwrap();
    assert_eq!(f.outbox_depth(), 0);
    let next = f
        .store
        .record_pos_transaction(Captured::at(NOW, pos_tx(6)))
        .await
        .unwrap();
    assert!(matches!(next, Recorded::New { seq: 6, .. }), "{next:?}");
    let status = f.store.reads().with(status::report).unwrap();
    let pos = status
        .outbox
        .iter()
        .find(|s| s.stream == "pos_transactions")
        .unwrap();
    assert_eq!((pos.depth, pos.last_seq, pos.acked_seq), (1, 6, 5));
}

#[tokio::test]
async fn bopis_check_in_and_partial_hand_over_update_order_stock_and_outbox() {
    let f = Fixture::new().await;
    let order = sample::bopis_order_id(0);
    let lines = f.store.reads().with({
        let order = order.clone();
        move |c| queries::order_lines(c, &order)
    });
    let lines = lines.unwrap();
    let stock_of = |gtin: &str| {
        f.count(&format!(
            "SELECT on_hand * 1000 + reserved_bopis FROM stock WHERE gtin = '{gtin}'"
        ))
    };
    let before: Vec<i64> = lines.iter().map(|l| stock_of(&l.gtin)).collect();

    let arrived = f
        .store
        .record_order_event(Captured::at(
            NOW,
            OrderUpdate {
                order_id: order.clone(),
                event: OrderEvent::CustomerArrived,
                associate_id: None,
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        (arrived.from, arrived.to),
        (OrderStatus::ReadyForPickup, OrderStatus::CustomerArrived)
    );

    let refused = if lines.len() > 1 {
        vec![lines[0].line_no]
    } else {
        vec![]
    };
    let handed = f
        .store
        .record_order_event(Captured::at(
            NOW + 60_000,
            OrderUpdate {
                order_id: order.clone(),
                event: OrderEvent::HandOver {
                    refused_lines: refused.clone(),
                },
                associate_id: Some("A001".into()),
            },
        ))
        .await
        .unwrap();
    let expected = if refused.is_empty() {
        OrderStatus::HandedOver
    } else {
        OrderStatus::PartiallyHandedOver
    };
    assert_eq!(handed.to, expected);
    for (l, b) in lines.iter().zip(&before) {
        let qty = i64::from(l.qty_ordered);
        let handed_qty = if refused.contains(&l.line_no) { 0 } else { qty };
        // on_hand drops by what left the store; the reservation is released either way.
        assert_eq!(
            stock_of(&l.gtin),
            b - handed_qty * 1000 - qty,
            "line {}",
            l.line_no
        );
    }
    let kinds: Vec<String> = f
        .store
        .reads()
        .with(|c| outbox::pending(c, UplinkStream::OrderEvents, 10))
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(kinds, vec!["customer_arrived", "hand_over"]);
    // The order is no longer open on the customer panel.
    let view = f
        .store
        .reads()
        .with(|c| queries::customer_view(c, &sample::customer_id(0)))
        .unwrap()
        .unwrap();
    assert!(view.open_orders.iter().all(|o| o.order_id != order));
}

fn return_of_first_line() -> ReturnRecord {
    ReturnRecord {
        order_id: sample::delivered_order_id(0),
        lines: vec![RequestedLine { line_no: 1, qty: 1 }],
        reason: "too small".into(),
        condition: "as new".into(),
        disposition: Disposition::Restock,
        refund_method: "original_tender".into(),
        associate_id: Some("A001".into()),
        manager_override: None,
    }
}

#[tokio::test]
async fn return_outside_window_is_refused_then_recorded_with_manager_override() {
    let f = Fixture::new().await;
    // Delivered order 0 was delivered 3 days before NOW; 40 days later it is outside 30 days.
    let late = NOW + 37 * DAY;
    let err = f
        .store
        .record_return(Captured::at(late, return_of_first_line()))
        .await
        .unwrap_err();
    let StoreError::ReturnRefused(decision) = &err else {
        panic!("expected a refusal, got {err}");
    };
    assert!(
        matches!(
            decision.blocking[..],
            [Reason::OutsideWindow {
                days_since: 40,
                window_days: 30
            }]
        ),
        "{decision:?}"
    );
    assert!(err.to_string().contains("30 days"), "{err}");
    assert_eq!(f.count("SELECT count(*) FROM returns"), 0);
    assert_eq!(f.outbox_depth(), 0);

    let gtin: String =
        f.scalar("SELECT gtin FROM order_lines WHERE order_id = 'WEB-0000001' AND line_no = 1");
    let on_hand_sql = format!("SELECT coalesce((SELECT on_hand FROM stock WHERE gtin = '{gtin}'), -1)");
    let on_hand_before = f.count(&on_hand_sql);

    let mut with_override = return_of_first_line();
    with_override.manager_override = Some(ManagerOverride {
        associate_id: "M001".into(),
        reason: "customer was abroad".into(),
    });
    let outcome = f
        .store
        .record_return(Captured::at(late, with_override))
        .await
        .unwrap();
    let decision = outcome.decision.unwrap();
    assert!(decision.allowed);
    assert_eq!(decision.overridden.len(), 1);
    assert!(decision.refund_minor > 0);
    assert_eq!(
        f.count("SELECT count(*) FROM returns WHERE override_by = 'M001'"),
        1
    );
    assert_eq!(
        f.count("SELECT qty_returned FROM order_lines WHERE order_id = 'WEB-0000001' AND line_no = 1"),
        1
    );
    if on_hand_before >= 0 {
        assert_eq!(f.count(&on_hand_sql), on_hand_before + 1, "restocked");
    }
    let rows = f
        .store
        .reads()
        .with(|c| outbox::pending(c, UplinkStream::Returns, 10))
        .unwrap();
    assert_eq!(rows.len(), 1);
    let payload: serde_json::Value = serde_json::from_str(&rows[0].payload).unwrap();
    assert_eq!(payload["refund_minor"], decision.refund_minor);
    assert_eq!(payload["manager_override"]["reason"], "customer was abroad");
}

#[tokio::test]
async fn wishlist_edits_converge_with_cloud_state() {
    let f = Fixture::new().await;
    let customer = sample::customer_id(1);
    let gtin = sample::product_gtin(f.spec.seed, 11);
    let edit = |action| WishlistEdit {
        customer_id: customer.clone(),
        gtin: gtin.clone(),
        action,
        channel: "store-kiosk".into(),
    };
    f.store
        .record_wishlist_edit(Captured::at(NOW, edit(WishlistAction::Add)))
        .await
        .unwrap();
    f.store
        .record_wishlist_edit(Captured::at(NOW + 1000, edit(WishlistAction::Remove)))
        .await
        .unwrap();
    // An add captured earlier (a slow kiosk) arrives last: the removal still wins.
    f.store
        .record_wishlist_edit(Captured::at(NOW + 500, edit(WishlistAction::Add)))
        .await
        .unwrap();
    let g14 = firmware_interfaces::gtin::to_gtin14(&gtin).unwrap();
    let present = f.count(&format!(
        "SELECT present FROM wishlist_items WHERE customer_id = '{customer}' AND gtin = '{g14}'"
    ));
    assert_eq!(present, 0);
    // All three went to the cloud, which applies the same rule.
    assert_eq!(f.outbox_depth(), 3);
}

#[tokio::test]
async fn customer_view_by_card_shows_wishlist_cart_and_open_orders() {
    let f = Fixture::new().await;
    let card = sample::card_number(f.spec.seed, 0);
    let hash = f.store.hasher().card_hash(&card);
    let view = f
        .store
        .reads()
        .read(move |c| queries::customer_view_by_card_hash(c, &hash))
        .await
        .unwrap()
        .expect("customer 0 has a card");
    assert_eq!(view.profile.customer_id, sample::customer_id(0));
    assert!(
        !view.wishlist.is_empty(),
        "the first customers always have a wishlist"
    );
    assert!(view.cart.as_ref().is_some_and(|c| !c.lines.is_empty()));
    assert!(
        view.open_orders
            .iter()
            .any(|o| o.order_id == sample::bopis_order_id(0))
    );
    assert!(view.open_orders.iter().all(|o| !o.lines.is_empty()));
    // Stock and aisle are joined in for items the store carries.
    assert!(
        view.wishlist
            .iter()
            .chain(
                view.cart
                    .iter()
                    .flat_map(|c| c.lines.iter())
                    .map(|_| &view.wishlist[0])
            )
            .any(|w| w.stock.as_ref().is_some_and(|s| s.aisle.is_some()))
    );

    // An unknown card and a blocked card identify nobody.
    let unknown = f.store.hasher().card_hash("9000000000000000");
    assert!(
        f.store
            .reads()
            .with(|c| queries::customer_view_by_card_hash(c, &unknown))
            .unwrap()
            .is_none()
    );
    let blocked = f.count("SELECT count(*) FROM loyalty_cards WHERE status = 'blocked'");
    assert!(blocked > 0);
    let blocked_hash: Vec<u8> =
        f.scalar("SELECT card_hash FROM loyalty_cards WHERE status = 'blocked' LIMIT 1");
    let blocked_hash: [u8; 32] = blocked_hash.try_into().unwrap();
    assert!(
        f.store
            .reads()
            .with(|c| queries::customer_view_by_card_hash(c, &blocked_hash))
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn customer_search_finds_by_name_email_phone_and_last_four() {
    use crate::store::queries::{CustomerQuery, search_customers};
    let f = Fixture::new().await;
    let h = f.store.hasher().clone();
    let find = |text: &str| {
        let q = CustomerQuery::parse(&h, text);
        f.store
            .reads()
            .with(move |c| search_customers(c, &q, 20))
            .unwrap()
            .into_iter()
            .map(|hit| hit.customer_id)
            .collect::<Vec<_>>()
    };
    let c7 = sample::customer_id(7);
    // The e-mail, in another case and with spaces.
    assert_eq!(
        find(&format!("  {}  ", sample::customer_email(7).to_uppercase())),
        vec![c7.clone()]
    );
    // The phone in another spelling: 0049 instead of +49, no spaces.
    let phone = sample::customer_phone(7).replace("+49 ", "0049").replace(' ', "");
    assert_eq!(find(&phone), vec![c7.clone()]);
    // Last four: customer 7's number ends in 0008.
    assert!(matches!(
        CustomerQuery::parse(&h, "0008"),
        CustomerQuery::PhoneLast4(_)
    ));
    assert_eq!(find("0008"), vec![c7.clone()]);
    // A wrong address or number finds nobody; a name still searches names.
    assert!(find("nobody@example.com").is_empty());
    assert!(find("+49 170 9999999").is_empty());
    let first: String = f.scalar("SELECT first_name FROM customers WHERE customer_id = 'C00000008'");
    assert!(find(&first).contains(&c7));
    // The store holds neither the address nor the number.
    let clear: i64 = f.count(&format!(
        "SELECT count(*) FROM customers WHERE CAST(email_hash AS TEXT) LIKE '%example.com%' OR phone_last4 != '{}'",
        "0008"
    ));
    assert_eq!(
        clear,
        f.spec.customers as i64 - 1,
        "only customer 7 has last four 0008"
    );
}

#[tokio::test]
async fn product_lookup_accepts_every_gtin_form() {
    let f = Fixture::new().await;
    let upc = sample::product_gtin(f.spec.seed, 4); // every fifth product is a UPC-A
    assert_eq!(upc.len(), 12);
    for form in [upc.clone(), format!("0{upc}"), format!("00{upc}")] {
        let p = f
            .store
            .reads()
            .with(move |c| queries::product_by_gtin(c, &form))
            .unwrap()
            .unwrap();
        assert_eq!(p.gtin, format!("00{upc}"));
    }
    let bad = f
        .store
        .reads()
        .with(|c| queries::product_by_gtin(c, "4006381333932"));
    assert!(bad.unwrap_err().to_string().contains("check digit"));
}

#[tokio::test]
async fn card_number_never_reaches_the_database_file_or_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Store::open(StoreOptions::new(&path, hasher())).unwrap();
    let card = "9876543210123456";
    store
        .upsert_customer(entities::CustomerRecord {
            customer_id: "C-PRIVACY".into(),
            display_name: "Pat P.".into(),
            first_name: Some("Pat".into()),
            last_name: Some("Privacy".into()),
            tier: None,
            points: 0,
            preferences: Default::default(),
            consent: Default::default(),
            home_store: None,
            last_seen_ms: None,
            email_hash: None,
            phone_hash: None,
            phone_last4: None,
        })
        .await
        .unwrap();
    store
        .link_loyalty_card(card.to_string(), "C-PRIVACY".into())
        .await
        .unwrap();
    // The card identifies the customer...
    let hash = store.hasher().card_hash(card);
    let id = store
        .reads()
        .with(move |c| queries::customer_id_by_card_hash(c, &hash))
        .unwrap();
    assert_eq!(id.as_deref(), Some("C-PRIVACY"));
    // ...yet its digits are nowhere in the files, before and after the checkpoint.
    let search = |label: &str| {
        for suffix in ["", "-wal"] {
            let file = dir.path().join(format!("store.db{suffix}"));
            if let Ok(bytes) = std::fs::read(&file) {
                assert!(
                    !bytes.windows(card.len()).any(|w| w == card.as_bytes()),
                    "card number found in {} ({label})",
                    file.display()
                );
                // The name written is there: the search itself works.
                if suffix == "-wal" && !bytes.is_empty() {
                    assert!(bytes.windows(7).any(|w| w == b"Privacy"), "{label}");
                }
            }
        }
    };
    search("open");
    store.close();
    search("closed");
}

#[tokio::test]
async fn another_hashing_key_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    Store::open(StoreOptions::new(&path, hasher())).unwrap().close();
    let other = KeyedHasher::new(&[9u8; 32]).unwrap();
    let err = Store::open(StoreOptions::new(&path, other)).err().unwrap();
    assert!(err.to_string().contains("fingerprint"), "{err}");
}

/// The store's indexes in their own order: each index's keys (through the index,
/// `INDEXED BY`) with the row they point at.
fn index_orders(store: &Store) -> Vec<Vec<String>> {
    const SQL: [&str; 3] = [
        "SELECT hex(email_hash) || customer_id FROM customers INDEXED BY customers_email_hash
         WHERE email_hash IS NOT NULL ORDER BY email_hash",
        "SELECT hex(phone_hash) || customer_id FROM customers INDEXED BY customers_phone_hash
         WHERE phone_hash IS NOT NULL ORDER BY phone_hash",
        "SELECT customer_id || hex(card_hash) FROM loyalty_cards INDEXED BY loyalty_cards_customer
         ORDER BY customer_id",
    ];
    store
        .reads()
        .with(|c| {
            SQL.iter()
                .map(|sql| {
                    let mut stmt = c.prepare(sql)?;
                    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
                    Ok(rows.collect::<Result<Vec<_>, _>>()?)
                })
                .collect()
        })
        .unwrap()
}

/// A full snapshot's index rebuild sorts in a small memory budget and spills
/// sorted runs to temporary files, which SQLite's helper thread sorts and merges
/// (`StoreOptions::index_sort_kib`). With a budget far below the data (about
/// eight runs per index here) the indexes must be what an all-in-memory sort builds:
/// the same keys in the same order, every customer found by e-mail and phone,
/// and the file intact.
#[tokio::test]
async fn an_index_rebuild_that_spills_to_sorted_runs_builds_the_same_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = SampleSpec::new(11, 20_000, 50);
    spec.reference_time_ms = NOW;
    let snap = dir.path().join("snap.jsonl");
    sample::write_snapshot(&spec, &hasher(), std::fs::File::create(&snap).unwrap()).unwrap();
    let open = |name: &str, sort_kib: u32| {
        let mut options = StoreOptions::new(dir.path().join(name), hasher());
        options.index_sort_kib = sort_kib;
        Store::open(options).unwrap()
    };
    // The smallest budget SQLite allows (ten pages); the default is far above this
    // sample's indexes (about 1 MB each), so that store sorts in one run.
    let spilled = open("spilled.db", 1);
    let in_memory = open("in-memory.db", DEFAULT_INDEX_SORT_KIB);
    for store in [&spilled, &in_memory] {
        store
            .import_snapshot(&snap, ImportExpectations::default())
            .await
            .unwrap();
    }

    let orders = index_orders(&spilled);
    assert_eq!(orders[0].len(), 20_000, "every customer is in the e-mail index");
    assert_eq!(orders[1].len(), 20_000, "every customer is in the phone index");
    assert!(
        orders[2].len() > 20_000,
        "every card is in the cards' customer index"
    );
    assert_eq!(orders, index_orders(&in_memory));
    let problems = spilled.reads().with(integrity_problems).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    for i in [0, 7, 9_999, 19_999] {
        let id = sample::customer_id(i);
        for text in [sample::customer_email(i), sample::customer_phone(i)] {
            let query = queries::CustomerQuery::parse(&hasher(), &text);
            let hits = spilled
                .reads()
                .with(move |c| queries::search_customers(c, &query, 5))
                .unwrap();
            let found: Vec<&str> = hits.iter().map(|h| h.customer_id.as_str()).collect();
            assert_eq!(found, [id.as_str()], "search for {text}");
        }
    }
}

/// The parser sends loyalty cards in runs sorted by hash (`snapshot::CARD_RUN`); what
/// the import does with them must not change: the last copy of a card wins, every card
/// is there, and a card after the end record is still refused.
#[tokio::test]
async fn sorted_card_runs_load_what_the_file_says() {
    let f = Fixture::new().await;
    let cards_before = f.count("SELECT count(*) FROM loyalty_cards");
    let text = std::fs::read_to_string(f.dir.path().join("snap.jsonl")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let end = lines.pop().unwrap();
    let records: u64 = serde_json::from_str::<serde_json::Value>(&end).unwrap()["end"]["records"]
        .as_u64()
        .unwrap();
    // A later copy of the first card, moved to another customer and blocked.
    let first: serde_json::Value = lines
        .iter()
        .find(|l| l.starts_with(r#"{"loyalty_card""#))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    let hash = first["loyalty_card"]["card_hash"].as_str().unwrap().to_string();
    let owner = first["loyalty_card"]["customer_id"].as_str().unwrap().to_string();
    let other = f.scalar::<String>(&format!(
        "SELECT customer_id FROM customers WHERE customer_id <> '{owner}' LIMIT 1"
    ));
    lines.push(format!(
        r#"{{"loyalty_card":{{"card_hash":"{hash}","customer_id":"{other}","status":"blocked"}}}}"#
    ));
    lines.push(format!(r#"{{"end":{{"records":{}}}}}"#, records + 1));
    let dup = f.dir.path().join("dup.jsonl");
    std::fs::write(&dup, lines.join("\n")).unwrap();
    f.store
        .import_snapshot(&dup, ImportExpectations::default())
        .await
        .unwrap();
    assert_eq!(f.count("SELECT count(*) FROM loyalty_cards"), cards_before);
    assert_eq!(
        f.scalar::<String>(&format!(
            "SELECT customer_id || ' ' || status FROM loyalty_cards WHERE card_hash = X'{hash}'"
        )),
        format!("{other} blocked"),
        "the later copy of the card wins"
    );
    // Every card of the file is there under its own hash.
    let hashes: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with(r#"{"loyalty_card""#))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["loyalty_card"]["card_hash"].as_str().unwrap().to_uppercase()
        })
        .collect();
    let stored: std::collections::BTreeSet<String> = f
        .store
        .reads()
        .with(|c| {
            let mut stmt = c.prepare("SELECT hex(card_hash) FROM loyalty_cards")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .unwrap();
    assert_eq!(stored, hashes.into_iter().collect());

    // A card behind the end record: refused, naming its line, nothing changed.
    let after = f.dir.path().join("after.jsonl");
    let card_line = lines.len() + 1;
    lines.push(format!(
        r#"{{"loyalty_card":{{"card_hash":"{}","customer_id":"{other}"}}}}"#,
        "00".repeat(32)
    ));
    std::fs::write(&after, lines.join("\n")).unwrap();
    let err = f
        .store
        .import_snapshot(&after, ImportExpectations::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("line {card_line}")) && err.contains("after the end record"),
        "{err}"
    );
    assert_eq!(f.count("SELECT count(*) FROM loyalty_cards"), cards_before);
}

#[tokio::test]
async fn import_is_all_or_nothing() {
    let f = Fixture::new().await;
    let customers = f.count("SELECT count(*) FROM customers");
    assert_eq!(customers, 200);
    let good = std::fs::read_to_string(f.dir.path().join("snap.jsonl")).unwrap();
    let lines: Vec<&str> = good.lines().collect();

    // A bad record near the end: every earlier record was already inserted in the transaction.
    let mut bad = lines.clone();
    let at = bad.len() - 3;
    bad[at] =
        r#"{"product":{"gtin":"4006381333932","sku":"X","name":"Bad","price_minor":1,"currency":"EUR"}}"#;
    let bad_file = f.dir.path().join("bad.jsonl");
    std::fs::write(&bad_file, bad.join("\n")).unwrap();
    let err = f
        .store
        .import_snapshot(&bad_file, ImportExpectations::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("line {}", at + 1)), "{err}");
    assert!(err.contains("check digit"), "{err}");

    // Cut short: no end record.
    let cut = f.dir.path().join("cut.jsonl");
    std::fs::write(&cut, lines[..lines.len() - 1].join("\n")).unwrap();
    let err = f
        .store
        .import_snapshot(&cut, ImportExpectations::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("incomplete"), "{err}");

    // Another store's snapshot.
    let err = f
        .store
        .import_snapshot(
            &f.dir.path().join("snap.jsonl"),
            ImportExpectations {
                tenant_id: None,
                store_id: Some("store-999".into()),
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("store-999"), "{err}");

    assert_eq!(f.count("SELECT count(*) FROM customers"), customers);
    assert_eq!(f.count("SELECT count(*) FROM products"), 80);

    // A snapshot hashed with another key.
    let other = f.dir.path().join("other-key.jsonl");
    sample::write_snapshot(
        &f.spec,
        &KeyedHasher::new(&[3u8; 32]).unwrap(),
        std::fs::File::create(&other).unwrap(),
    )
    .unwrap();
    let err = f
        .store
        .import_snapshot(&other, ImportExpectations::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("fingerprint"), "{err}");
}

#[tokio::test]
async fn reimport_replaces_cached_data_but_keeps_what_the_store_recorded() {
    let f = Fixture::new().await;
    f.store
        .record_pos_transaction(Captured::at(NOW, pos_tx(1)))
        .await
        .unwrap();
    let mut smaller = f.spec.clone();
    smaller.customers = 50;
    let snap = f.dir.path().join("small.jsonl");
    sample::write_snapshot(&smaller, &hasher(), std::fs::File::create(&snap).unwrap()).unwrap();
    let report = f
        .store
        .import_snapshot(&snap, ImportExpectations::default())
        .await
        .unwrap();
    assert_eq!(report.counts["customers"], 50);
    assert_eq!(f.count("SELECT count(*) FROM customers"), 50);
    assert_eq!(f.count("SELECT count(*) FROM pos_transactions"), 1);
    assert_eq!(f.outbox_depth(), 1);
}

#[tokio::test]
async fn close_checkpoints_the_wal() {
    let f = Fixture::new().await;
    f.store
        .record_pos_transaction(Captured::at(NOW, pos_tx(1)))
        .await
        .unwrap();
    let wal = f.dir.path().join("store.db-wal");
    assert!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0);
    let Fixture { dir, store, .. } = f;
    store.close();
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
    let conn = open_read_only(&dir.path().join("store.db")).unwrap();
    assert!(integrity_problems(&conn).unwrap().is_empty());
    let n: i64 = conn
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn snapshot_load_is_checkpointed_into_the_file_in_the_background() {
    // The import commits into the WAL with automatic checkpoints off; a helper
    // thread then copies it into the database file. A copy of the file alone (no
    // WAL beside it) therefore holds the load soon after, with no further write.
    // (A partial snapshot: a full one goes into a new file, with no WAL.)
    let f = Fixture::new().await;
    let mut more = f.spec.clone();
    more.products = 120;
    let full = f.dir.path().join("more-products.jsonl");
    sample::write_snapshot(&more, &hasher(), std::fs::File::create(&full).unwrap()).unwrap();
    let part = f.dir.path().join("products.jsonl");
    std::fs::write(&part, products_only(&std::fs::read_to_string(&full).unwrap())).unwrap();
    f.store
        .import_snapshot(&part, ImportExpectations::default())
        .await
        .unwrap();
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("copy.db");
    let mut products = 0;
    for _ in 0..200 {
        std::fs::copy(f.dir.path().join("store.db"), &copy).unwrap();
        products = rusqlite::Connection::open(&copy)
            .unwrap()
            .query_row("SELECT count(*) FROM products", [], |r| r.get::<_, i64>(0))
            .unwrap_or(0);
        let _ = std::fs::remove_file(copy_dir.path().join("copy.db-wal"));
        if products == 120 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(products, 120, "the database file alone holds the snapshot");
    // The writer's automatic checkpoints are back on, and the WAL is kept small.
    let (auto, limit): (i64, i64) = f
        .store
        .writer
        .call(|c| {
            Ok((
                c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))?,
                c.query_row("PRAGMA journal_size_limit", [], |r| r.get(0))?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(auto, 1000);
    assert_eq!(limit, connection::WAL_SIZE_LIMIT);
}

#[tokio::test]
async fn concurrent_writers_are_serialised_without_busy_errors() {
    let f = Fixture::new().await;
    let store = std::sync::Arc::new(f.store);
    let mut tasks = Vec::new();
    for n in 0..64 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.record_pos_transaction(Captured::at(NOW, pos_tx(n))).await
        }));
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap().unwrap(), Recorded::New { .. }));
    }
    let seqs: Vec<i64> = store
        .reads()
        .with(|c| outbox::pending(c, UplinkStream::PosTransactions, 100))
        .unwrap()
        .into_iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, (1..=64).collect::<Vec<_>>(), "gap-free, in commit order");
}

mod snapshot_property {
    use super::*;
    use proptest::prelude::*;

    /// A valid header, then arbitrary lines: the import refuses with an error (it
    /// never panics) and the database keeps what it had.
    fn import_lines(lines: &[String]) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let f = Fixture::new_small().await;
            let before = f.count("SELECT count(*) FROM customers");
            let mut text = std::fs::read_to_string(f.dir.path().join("snap.jsonl"))
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .to_string();
            for l in lines {
                text.push('\n');
                text.push_str(l);
            }
            let path = f.dir.path().join("fuzz.jsonl");
            std::fs::write(&path, text).unwrap();
            let result = f
                .store
                .import_snapshot(&path, ImportExpectations::default())
                .await;
            assert!(result.is_err(), "no end record, so never accepted");
            assert_eq!(f.count("SELECT count(*) FROM customers"), before);
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn arbitrary_record_lines_are_refused_cleanly(lines in proptest::collection::vec(
            prop_oneof![
                "\\PC{0,80}",
                Just(r#"{"product":{"gtin":"4006381333931","sku":"S","name":"N","price_minor":-5,"currency":"EUR"}}"#.to_string()),
                Just(r#"{"loyalty_card":{"card_hash":"zz","customer_id":"C"}}"#.to_string()),
                Just(r#"{"order":{"order_id":"O","kind":"bopis","status":"nope","currency":"EUR","total_minor":1,"placed_at_ms":1,"lines":[]}}"#.to_string()),
                Just(r#"{"customer":{"customer_id":"C9","display_name":"X","points":"many"}}"#.to_string()),
                Just(r#"{"end":{"records":18446744073709551615}}"#.to_string()),
            ],
            1..6,
        )) {
            import_lines(&lines);
        }
    }
}

#[tokio::test]
async fn redelivered_order_events_and_returns_are_recorded_once() {
    let f = Fixture::new().await;
    let arrived = Captured::at(
        NOW,
        OrderUpdate {
            order_id: sample::bopis_order_id(0),
            event: OrderEvent::CustomerArrived,
            associate_id: None,
        },
    );
    let first = f.store.record_order_event(arrived.clone()).await.unwrap();
    assert!(matches!(first.recorded, Recorded::New { .. }));
    // The same captured event again (a retried request): not an illegal
    // transition, a duplicate, reporting where the order stands.
    let again = f.store.record_order_event(arrived).await.unwrap();
    assert_eq!(again.recorded, Recorded::Duplicate);
    assert_eq!(
        (again.from, again.to),
        (OrderStatus::CustomerArrived, OrderStatus::CustomerArrived)
    );

    let ret = Captured::at(NOW, return_of_first_line());
    let first = f.store.record_return(ret.clone()).await.unwrap();
    assert!(first.decision.is_some_and(|d| d.allowed));
    // Acknowledged by the cloud, so the key is no longer in the outbox: the
    // returns table still recognises it.
    f.store.acknowledge(UplinkStream::Returns, 1).await.unwrap();
    let again = f.store.record_return(ret).await.unwrap();
    assert_eq!(again.recorded, Recorded::Duplicate);
    assert!(again.decision.is_none());
    assert_eq!(f.count("SELECT count(*) FROM returns"), 1);
    assert_eq!(
        f.count("SELECT qty_returned FROM order_lines WHERE order_id = 'WEB-0000001' AND line_no = 1"),
        1
    );
    assert_eq!(f.outbox_depth(), 1, "only the order event waits");
}

#[tokio::test]
async fn journal_receipts_go_to_the_outbox_and_devices_to_status() {
    let f = Fixture::new().await;
    let receipt = Captured::at(
        NOW,
        records::JournalReceipt {
            device_id: "printer-1".into(),
            text: "COFFEE 2.50\nVISA ************1111".into(),
        },
    );
    break_outbox(&f.store).await;
    assert!(f.store.record_journal_receipt(receipt.clone()).await.is_err());
    assert_eq!(
        f.count("SELECT count(*) FROM journal_records"),
        0,
        "no row without its outbox row"
    );
    repair_outbox(&f.store).await;
    let first = f.store.record_journal_receipt(receipt.clone()).await.unwrap();
    assert_eq!(
        first,
        Recorded::New {
            stream: UplinkStream::Journal,
            seq: 1
        }
    );
    f.store.acknowledge(UplinkStream::Journal, 1).await.unwrap();
    assert_eq!(
        f.store.record_journal_receipt(receipt).await.unwrap(),
        Recorded::Duplicate
    );
    assert_eq!(f.count("SELECT count(*) FROM journal_records"), 1);

    for (state, reason) in [("connected", None), ("disconnected", Some("unplugged"))] {
        f.store
            .set_device_status(records::DeviceStatusRecord {
                device_id: "scanner-1".into(),
                kind: "serial".into(),
                state: state.into(),
                reason: reason.map(String::from),
                updated_at_ms: NOW,
            })
            .await
            .unwrap();
    }
    let bad = records::DeviceStatusRecord {
        device_id: "scanner-1".into(),
        kind: "serial".into(),
        state: "asleep".into(),
        reason: None,
        updated_at_ms: NOW,
    };
    assert!(f.store.set_device_status(bad).await.is_err());
    let report = f.store.reads().with(status::report).unwrap();
    assert_eq!(report.devices.len(), 1);
    assert_eq!(report.devices[0].state, "disconnected");
    assert_eq!(report.devices[0].reason.as_deref(), Some("unplugged"));
    assert_eq!(report.counts.journal_records, 1);
    let text = crate::cli::render_status(&report, NOW + 120_000);
    assert!(
        text.contains("scanner-1") && text.contains("disconnected: unplugged, since 2 min ago"),
        "{text}"
    );
}

mod downlink {
    //! Applying cloud downlink batches: positions, gaps, epochs, dead letters, erasure.
    use super::*;
    use crate::events::DownlinkStream;
    use crate::sync::protocol::{DownlinkBatch, DownlinkItem, Op};
    use rusqlite::OptionalExtension;
    use serde_json::json;

    const TOPIC: &str = "sa/v1/store/acme/s1/products";

    fn batch(stream: &str, epoch: &str, items: Vec<(i64, Op, serde_json::Value)>) -> DownlinkBatch {
        DownlinkBatch {
            v: 1,
            stream: stream.into(),
            epoch: epoch.into(),
            items: items
                .into_iter()
                .map(|(seq, op, entity)| DownlinkItem { seq, op, entity })
                .collect(),
        }
    }

    fn product(gtin: &str, price: i64) -> serde_json::Value {
        json!({"gtin": gtin, "sku": "S", "name": "Pen", "price_minor": price, "currency": "EUR"})
    }

    fn epoch(f: &Fixture) -> String {
        format!("sample-{}", f.spec.seed)
    }

    async fn apply(
        f: &Fixture,
        stream: DownlinkStream,
        b: DownlinkBatch,
    ) -> crate::store::downlink::BatchOutcome {
        f.store.apply_downlink(TOPIC.into(), stream, b).await.unwrap()
    }

    fn price(f: &Fixture, gtin: &str) -> Option<i64> {
        f.store
            .reads()
            .with(|c| {
                Ok(
                    c.query_row("SELECT price_minor FROM products WHERE gtin = ?1", [gtin], |r| {
                        r.get(0)
                    })
                    .optional()?,
                )
            })
            .unwrap()
    }

    #[tokio::test]
    async fn in_order_items_apply_once_and_redeliveries_are_ignored() {
        let f = Fixture::new_small().await;
        let e = epoch(&f);
        let b = batch(
            "products",
            &e,
            vec![
                (1, Op::Upsert, product("04006381333931", 100)),
                (2, Op::Upsert, product("04006381333931", 250)),
            ],
        );
        let out = apply(&f, DownlinkStream::Products, b.clone()).await;
        assert_eq!((out.applied, out.ignored, out.gap), (2, 0, None));
        assert_eq!(out.position.unwrap().last_seq, 2);
        assert_eq!(price(&f, "04006381333931"), Some(250));
        // Redelivered: nothing changes, even if the cloud's old copy differs now.
        let out = apply(&f, DownlinkStream::Products, b).await;
        assert_eq!((out.applied, out.ignored), (0, 2));
        let del = batch(
            "products",
            &e,
            vec![(3, Op::Delete, json!({"gtin": "4006381333931"}))],
        );
        assert_eq!(apply(&f, DownlinkStream::Products, del).await.applied, 1);
        assert_eq!(price(&f, "04006381333931"), None);
    }

    #[tokio::test]
    async fn a_gap_stops_the_batch_and_names_the_missing_range() {
        let f = Fixture::new_small().await;
        let e = epoch(&f);
        let b = batch(
            "products",
            &e,
            vec![
                (1, Op::Upsert, product("04006381333931", 100)),
                (4, Op::Upsert, product("04006381333931", 400)),
                (5, Op::Upsert, product("04006381333931", 500)),
            ],
        );
        let out = apply(&f, DownlinkStream::Products, b).await;
        assert_eq!(out.applied, 1);
        assert_eq!(out.gap, Some((2, 5)));
        assert_eq!(out.position.unwrap().last_seq, 1);
        assert_eq!(
            price(&f, "04006381333931"),
            Some(100),
            "nothing after the gap is applied"
        );
    }

    #[tokio::test]
    async fn no_position_or_another_epoch_asks_for_a_snapshot() {
        let f = Fixture::new_small().await;
        let b = batch(
            "products",
            "e-new",
            vec![(1, Op::Upsert, product("04006381333931", 100))],
        );
        let out = apply(&f, DownlinkStream::Products, b).await;
        assert!(out.needs_snapshot.unwrap().contains("epoch"));
        assert_eq!(out.applied, 0);
        assert_eq!(price(&f, "04006381333931"), None);
        // A stream the store holds no position for.
        f.store
            .with_writer(|c| {
                c.execute("DELETE FROM downlink_streams WHERE stream = 'config'", [])?;
                Ok(())
            })
            .await
            .unwrap();
        let b = batch(
            "config",
            "e1",
            vec![(1, Op::Upsert, json!({"key": "k", "value": 1}))],
        );
        let out = apply(&f, DownlinkStream::Config, b).await;
        assert!(out.needs_snapshot.unwrap().contains("no local position"));
    }

    #[tokio::test]
    async fn a_bad_item_is_a_dead_letter_and_the_stream_goes_on() {
        let f = Fixture::new_small().await;
        let e = epoch(&f);
        let b = batch(
            "products",
            &e,
            vec![
                (
                    1,
                    Op::Upsert,
                    json!({"gtin": "04006381333931", "price_minor": "free"}),
                ),
                (2, Op::Upsert, product("12345", 1)),
                (3, Op::Upsert, product("04006381333931", 300)),
            ],
        );
        let out = apply(&f, DownlinkStream::Products, b).await;
        assert_eq!((out.applied, out.dead_lettered), (3, 2));
        assert_eq!(out.position.unwrap().last_seq, 3);
        assert_eq!(price(&f, "04006381333931"), Some(300));
        let errors: Vec<(String, String)> = f
            .store
            .reads()
            .with(|c| {
                let mut s = c.prepare("SELECT source, error FROM dead_letters ORDER BY id")?;
                let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        assert_eq!(errors.len(), 2);
        assert!(errors.iter().all(|(source, _)| source == TOPIC));
        assert!(errors[0].1.contains("seq 1"), "{}", errors[0].1);
        assert!(
            errors[1].1.contains("seq 2") && errors[1].1.contains("12345"),
            "{}",
            errors[1].1
        );
    }

    #[tokio::test]
    async fn wishlist_items_merge_last_writer_wins() {
        let f = Fixture::new_small().await;
        let e = epoch(&f);
        let item = |present: bool, at: i64, op: &str| {
            json!({"customer_id": "c-x", "gtin": "04006381333931", "present": present,
                   "channel": "web", "op_at_ms": at, "op_id": op})
        };
        let b = batch(
            "wishlists",
            &e,
            vec![
                (1, Op::Upsert, item(true, 2000, "b")),
                (2, Op::Upsert, item(false, 1000, "a")),
            ],
        );
        assert_eq!(apply(&f, DownlinkStream::Wishlists, b).await.applied, 2);
        let present: bool = f.scalar("SELECT present FROM wishlist_items WHERE customer_id = 'c-x'");
        assert!(present, "the older remove must lose to the newer add");
    }

    #[tokio::test]
    async fn erasure_removes_every_trace_and_is_confirmed_through_the_outbox() {
        let f = Fixture::new().await;
        // A customer with a card, a wishlist, a cart and orders in the sample.
        let customer: String = f.scalar(
            "SELECT c.customer_id FROM customers c
                     WHERE EXISTS (SELECT 1 FROM loyalty_cards l WHERE l.customer_id = c.customer_id)
                       AND EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.customer_id)
                       AND (SELECT count(*) FROM customers d WHERE d.display_name = c.display_name) = 1
                     LIMIT 1",
        );
        // What identifies the person, as it sits in the files: the name and the
        // keyed hash of a card (a BLOB).
        let name: String = f.scalar(&format!(
            "SELECT display_name FROM customers WHERE customer_id = '{customer}'"
        ));
        let card: Vec<u8> = f.scalar(&format!(
            "SELECT card_hash FROM loyalty_cards WHERE customer_id = '{customer}' LIMIT 1"
        ));
        let files_hold = |needle: &[u8]| -> Vec<String> {
            ["store.db", "store.db-wal"]
                .into_iter()
                .filter(|n| {
                    std::fs::read(f.dir.path().join(n))
                        .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
                })
                .map(String::from)
                .collect()
        };
        // Let the snapshot's background checkpoint finish, so the name is in the
        // database file itself: the search below then means something.
        for _ in 0..100 {
            if files_hold(name.as_bytes()).contains(&"store.db".to_string()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            files_hold(name.as_bytes()).contains(&"store.db".to_string()),
            "the name {name:?} is in the file before the erasure"
        );
        let b = batch(
            "erasure",
            &epoch(&f),
            vec![(
                1,
                Op::Upsert,
                json!({"request_id": "er-1", "customer_id": customer}),
            )],
        );
        let out = apply(&f, DownlinkStream::Erasure, b).await;
        assert_eq!((out.applied, out.dead_lettered), (1, 0));
        // No byte of it is left in the database file or the WAL, free pages and
        // old page versions included.
        assert_eq!(files_hold(name.as_bytes()), Vec::<String>::new(), "name {name:?}");
        assert_eq!(files_hold(&card), Vec::<String>::new(), "card hash");
        for table in ["customers", "loyalty_cards", "wishlist_items", "carts", "orders"] {
            assert_eq!(
                f.count(&format!(
                    "SELECT count(*) FROM {table} WHERE customer_id = '{customer}'"
                )),
                0,
                "{table}"
            );
        }
        let payload: String = f
            .store
            .reads()
            .with(|c| {
                Ok(
                    c.query_row("SELECT payload FROM outbox WHERE stream = 'erasures'", [], |r| {
                        r.get(0)
                    })?,
                )
            })
            .unwrap();
        assert!(payload.contains("\"er-1\""), "{payload}");
    }
}

mod disk_full {
    use super::*;

    #[test]
    fn the_reserve_refuses_input_under_it_and_names_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let over = Reserve {
            dir: dir.path().to_owned(),
            bytes: u64::MAX,
        };
        let e = over.check().unwrap_err();
        assert!(e.is_disk_full(), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&dir.path().display().to_string()) && text.contains("new POS input is refused"),
            "{text}"
        );
        let none = Reserve {
            dir: dir.path().to_owned(),
            bytes: 0,
        };
        assert!(none.check().is_ok());
        assert_eq!(database_dir(Path::new("store.db")), PathBuf::from("."));
        assert_eq!(
            database_dir(Path::new("/var/lib/x/store.db")),
            PathBuf::from("/var/lib/x")
        );
    }

    /// SQLite's own disk-full error (`max_page_count` makes the file "full"): the
    /// write is refused whole, the store says so until a write succeeds again, and
    /// nothing half-written is left.
    #[tokio::test]
    async fn a_full_database_refuses_whole_writes_and_recovers_when_space_returns() {
        let f = Fixture::new_small().await;
        assert_eq!(f.store.storage().state, "ok");
        assert_eq!(f.store.storage().disk_full_since_ms, None);
        let pages: i64 = f
            .store
            .writer
            .call(|c| {
                let n: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                c.query_row(&format!("PRAGMA max_page_count = {n}"), [], |r| {
                    r.get::<_, i64>(0)
                })?;
                Ok(n)
            })
            .await
            .unwrap();
        let before = f.count("SELECT count(*) FROM pos_transactions");
        let mut refused = None;
        for seq in 1..=2_000 {
            match f.store.record_pos_transaction(Captured::now(pos_tx(seq))).await {
                Ok(_) => {}
                Err(e) => {
                    refused = Some((seq, e));
                    break;
                }
            }
        }
        let (seq, e) = refused.expect("a database capped at its page count fills up");
        assert!(e.is_disk_full(), "{e}");
        let storage = f.store.storage();
        assert_eq!(storage.state, "full");
        assert!(storage.disk_full_since_ms.is_some());
        // Every accepted transaction has its outbox row; the refused one has neither.
        let accepted = f.count("SELECT count(*) FROM pos_transactions") - before;
        assert_eq!(accepted, seq - 1);
        assert_eq!(
            f.count("SELECT count(*) FROM outbox WHERE stream = 'pos_transactions'"),
            accepted
        );
        // Space returns: the same transaction goes in, and the condition clears.
        f.store
            .writer
            .call(move |c| {
                c.query_row(&format!("PRAGMA max_page_count = {}", pages * 4), [], |r| {
                    r.get::<_, i64>(0)
                })?;
                Ok(())
            })
            .await
            .unwrap();
        assert!(matches!(
            f.store.record_pos_transaction(Captured::now(pos_tx(seq))).await,
            Ok(Recorded::New { .. })
        ));
        assert_eq!(f.store.storage().disk_full_since_ms, None);
        assert_eq!(f.store.storage().state, "ok");
        let check: String = f.scalar("PRAGMA integrity_check");
        assert_eq!(check, "ok");
    }
}

mod dead_letter_bounds {
    use super::*;
    use crate::store::downlink::{MAX_DEAD_LETTER_PAYLOAD, prune_dead_letters};

    #[tokio::test]
    async fn a_large_payload_is_cut_and_says_so() {
        let f = Fixture::new_small().await;
        let big = vec![b'x'; MAX_DEAD_LETTER_PAYLOAD + 10];
        f.store
            .dead_letter("t".into(), big, "too big".into())
            .await
            .unwrap();
        let (len, error): (i64, String) = f
            .store
            .reads()
            .with(|c| {
                Ok(
                    c.query_row("SELECT length(payload), error FROM dead_letters", [], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?,
                )
            })
            .unwrap();
        assert_eq!(len, MAX_DEAD_LETTER_PAYLOAD as i64);
        assert!(
            error.starts_with("too big (kept: the first 65536 of 65546 bytes)"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn the_oldest_go_beyond_the_row_and_byte_bounds() {
        let f = Fixture::new_small().await;
        for i in 0..200 {
            f.store
                .dead_letter(format!("t{i}"), vec![b'x'; 100], "e".into())
                .await
                .unwrap();
        }
        // The production bounds are far away: all 200 are kept so far.
        assert_eq!(f.count("SELECT count(*) FROM dead_letters"), 200);
        let removed = f
            .store
            .with_writer(|c| {
                // At most 150 letters: the 50 oldest go; then at most 10,000 bytes:
                // the newest 100 stay.
                let by_rows = prune_dead_letters(c, 200, 150, i64::MAX)?;
                let by_bytes = prune_dead_letters(c, 200, 150, 10_000)?;
                Ok((by_rows, by_bytes))
            })
            .await
            .unwrap();
        assert_eq!(removed, (50, 50));
        let (oldest, newest): (String, String) = f
            .store
            .reads()
            .with(|c| {
                Ok(c.query_row(
                    "SELECT (SELECT source FROM dead_letters ORDER BY id LIMIT 1),
                            (SELECT source FROM dead_letters ORDER BY id DESC LIMIT 1)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .unwrap();
        assert_eq!((oldest.as_str(), newest.as_str()), ("t100", "t199"));
    }
}

/// A copy of `full` that replaces only the products and stock streams.
fn products_only(full: &str) -> String {
    let mut lines = full.lines();
    let mut header: snapshot::SnapshotHeader = serde_json::from_str(lines.next().unwrap()).unwrap();
    header.streams.retain(|s, _| s == "products" || s == "stock");
    let records: Vec<&str> = lines
        .filter(|l| l.starts_with("{\"product\"") || l.starts_with("{\"stock\""))
        .collect();
    let mut out = serde_json::to_string(&header).unwrap();
    for r in &records {
        out.push('\n');
        out.push_str(r);
    }
    out.push_str(&format!("\n{{\"end\":{{\"records\":{}}}}}\n", records.len()));
    out
}

/// A full snapshot is loaded into a new file that replaces the database
/// ([`snapshot`]'s `replace` module); a partial one in place.
mod new_file {
    use super::*;
    use rusqlite::types::Value;
    use std::os::unix::fs::MetadataExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn inode(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().ino()
    }

    /// Every row of `table` in key order, without the columns named `skip`.
    fn rows_of(c: &rusqlite::Connection, table: &str, skip: &str) -> rusqlite::Result<Vec<Vec<Value>>> {
        let mut stmt = c.prepare(&format!("SELECT * FROM \"{table}\" ORDER BY 1, 2"))?;
        let keep: Vec<usize> = (0..stmt.column_count())
            .filter(|&i| stmt.column_name(i).is_ok_and(|n| n != skip))
            .collect();
        stmt.query_map([], |r| keep.iter().map(|&i| r.get::<_, Value>(i)).collect())?
            .collect()
    }

    /// Every row of every table the cloud does not fill (stream positions are
    /// the snapshot's), as values.
    fn local_rows(f: &Fixture) -> Vec<(String, Vec<Vec<Value>>)> {
        let cached: Vec<&str> = crate::events::DownlinkStream::ALL
            .iter()
            .flat_map(|s| s.tables().iter().copied())
            .chain(["downlink_streams"])
            .collect();
        f.store
            .reads()
            .with(move |c| {
                let tables: Vec<String> = c
                    .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")?
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let mut out = Vec::new();
                for t in tables.into_iter().filter(|t| !cached.contains(&t.as_str())) {
                    let rows = rows_of(c, &t, "")?;
                    out.push((t, rows));
                }
                Ok(out)
            })
            .unwrap()
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".loading"))
            .collect()
    }

    /// Writes the fixture's sample with `edit` applied to `name` in its directory.
    fn variant(f: &Fixture, name: &str, edit: impl FnOnce(&mut SampleSpec)) -> PathBuf {
        let mut spec = f.spec.clone();
        edit(&mut spec);
        let snap = f.dir.path().join(name);
        sample::write_snapshot(&spec, &hasher(), std::fs::File::create(&snap).unwrap()).unwrap();
        snap
    }

    async fn import(store: &Store, snap: &Path) -> Result<snapshot::ImportReport, StoreError> {
        store.import_snapshot(snap, ImportExpectations::default()).await
    }

    /// Records something in every table the agent fills itself.
    async fn record_local_state(f: &Fixture) {
        f.store
            .record_pos_transaction(Captured::at(NOW, pos_tx(1)))
            .await
            .unwrap();
        f.store
            .dead_letter(
                "sa/v1/test".into(),
                b"{not json".to_vec(),
                "expected value".into(),
            )
            .await
            .unwrap();
        f.store
            .record_journal_receipt(Captured::at(
                NOW,
                crate::store::records::JournalReceipt {
                    device_id: "printer-1".into(),
                    text: "THANK YOU".into(),
                },
            ))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_full_snapshot_replaces_the_file_and_keeps_what_the_store_recorded() {
        let f = Fixture::new().await;
        record_local_state(&f).await;
        let db = f.dir.path().join("store.db");
        let local_before = local_rows(&f);
        assert!(
            local_before
                .iter()
                .any(|(t, rows)| t == "pos_transactions" && rows.len() == 1)
        );
        assert!(
            local_before
                .iter()
                .any(|(t, rows)| t == "dead_letters" && rows.len() == 1)
        );
        assert!(
            local_before
                .iter()
                .any(|(t, rows)| t == "journal_records" && rows.len() == 1)
        );
        let page_size: i64 = f.scalar("PRAGMA page_size");
        let old_inode = inode(&db);

        let snap = variant(&f, "small.jsonl", |s| s.customers = 50);
        let report = import(&f.store, &snap).await.unwrap();
        assert_eq!(report.counts["customers"], 50);
        assert_ne!(inode(&db), old_inode, "the database is a new file");
        assert!(
            leftovers(f.dir.path()).is_empty(),
            "{:?}",
            leftovers(f.dir.path())
        );
        assert_eq!(f.count("SELECT count(*) FROM customers"), 50);
        assert_eq!(f.count("SELECT count(*) FROM downlink_streams"), 10);
        // Everything the agent recorded itself, byte for byte, outbox included.
        let local_after = local_rows(&f);
        assert_eq!(local_after, local_before);
        assert_eq!(
            f.outbox_depth(),
            2,
            "the sale and the journal receipt wait for the cloud"
        );
        assert_eq!(f.scalar::<i64>("PRAGMA page_size"), page_size);

        // The writer works on the new file with the agent's settings, and what it
        // writes is there after a restart.
        let (mode, sync, secure): (String, i64, i64) = f
            .store
            .with_writer(|c| {
                Ok((
                    c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
                    c.query_row("PRAGMA synchronous", [], |r| r.get(0))?,
                    c.query_row("PRAGMA secure_delete", [], |r| r.get(0))?,
                ))
            })
            .await
            .unwrap();
        assert_eq!((mode.as_str(), sync, secure), ("wal", 2, 1));
        f.store
            .record_pos_transaction(Captured::at(NOW, pos_tx(2)))
            .await
            .unwrap();
        let Fixture { dir, store, .. } = f;
        store.close();
        let conn = open_read_only(&dir.path().join("store.db")).unwrap();
        assert!(integrity_problems(&conn).unwrap().is_empty());
        let (txs, customers): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM pos_transactions), (SELECT count(*) FROM customers)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((txs, customers), (2, 50));
    }

    #[tokio::test]
    async fn queries_go_on_while_the_file_is_replaced() {
        let f = Fixture::new().await;
        let snap = variant(&f, "small.jsonl", |s| s.customers = 50);
        let Fixture { dir: _dir, store, .. } = f;
        let store = Arc::new(store);
        let stop = Arc::new(AtomicBool::new(false));
        let reader =
            {
                let (store, stop) = (store.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        seen.push(
                            store
                                .reads()
                                .with(|c| {
                                    Ok(c.query_row("SELECT count(*) FROM customers", [], |r| {
                                        r.get::<_, i64>(0)
                                    })?)
                                })
                                .map_err(|e| e.to_string()),
                        );
                    }
                    seen
                })
            };
        for _ in 0..5 {
            import(&store, &snap).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let seen = reader.join().unwrap();
        let errors: Vec<&String> = seen.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(errors.is_empty(), "queries failed during the swaps: {errors:?}");
        let counts: std::collections::BTreeSet<i64> = seen.iter().map(|r| *r.as_ref().unwrap()).collect();
        assert!(counts.iter().all(|c| [200, 50].contains(c)), "{counts:?}");
        assert_eq!(seen.last().unwrap().as_ref().unwrap(), &50);
        assert_eq!(
            store
                .reads()
                .with(|c| Ok(c.query_row("SELECT count(*) FROM customers", [], |r| r.get::<_, i64>(0))?))
                .unwrap(),
            50
        );
    }

    #[tokio::test]
    async fn a_refused_full_snapshot_leaves_the_file_and_no_new_one() {
        let f = Fixture::new().await;
        let db = f.dir.path().join("store.db");
        let old_inode = inode(&db);
        let good = std::fs::read_to_string(f.dir.path().join("snap.jsonl")).unwrap();
        let lines: Vec<&str> = good.lines().collect();
        let cut = f.dir.path().join("cut.jsonl");
        std::fs::write(&cut, lines[..lines.len() - 1].join("\n")).unwrap();
        let err = import(&f.store, &cut).await.unwrap_err();
        assert!(err.to_string().contains("incomplete"), "{err}");
        assert_eq!(inode(&db), old_inode);
        assert!(
            leftovers(f.dir.path()).is_empty(),
            "{:?}",
            leftovers(f.dir.path())
        );
        assert_eq!(f.count("SELECT count(*) FROM customers"), 200);
        f.store
            .record_pos_transaction(Captured::at(NOW, pos_tx(1)))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_unfinished_load_is_removed_at_start() {
        let f = Fixture::new().await;
        let Fixture { dir, store, .. } = f;
        store.close();
        for name in ["store.db.loading", "store.db.loading-journal"] {
            std::fs::write(dir.path().join(name), b"half a database").unwrap();
        }
        let store = Store::open(StoreOptions::new(dir.path().join("store.db"), hasher())).unwrap();
        assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
        let n: i64 = store
            .reads()
            .with(|c| Ok(c.query_row("SELECT count(*) FROM customers", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(n, 200);
    }

    /// Every row of every table the cloud fills, and the stream positions,
    /// without the times of the load (`updated_at_ms`).
    fn cached_rows(store: &Store) -> Vec<(String, Vec<Vec<Value>>)> {
        store
            .reads()
            .with(|c| {
                let mut out = Vec::new();
                for t in crate::events::DownlinkStream::ALL
                    .iter()
                    .flat_map(|s| s.tables().iter().copied())
                {
                    out.push((t.to_string(), rows_of(c, t, "updated_at_ms")?));
                }
                let positions = c
                    .prepare("SELECT stream, epoch, last_seq FROM downlink_streams ORDER BY stream")?
                    .query_map([], |r| Ok(vec![r.get(0)?, r.get(1)?, r.get(2)?]))?
                    .collect::<Result<Vec<Vec<Value>>, _>>()?;
                out.push(("downlink_streams".into(), positions));
                Ok(out)
            })
            .unwrap()
    }

    #[tokio::test]
    async fn with_another_connection_open_the_snapshot_is_copied_in_place() {
        let f = Fixture::new().await;
        record_local_state(&f).await;
        let db = f.dir.path().join("store.db");
        let local_before = local_rows(&f);
        // What an offline CLI command or a monitoring script would hold.
        let other = rusqlite::Connection::open(&db).unwrap();
        let n: i64 = other
            .query_row("SELECT count(*) FROM customers", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 200);
        let old_inode = inode(&db);
        let snap = variant(&f, "other.jsonl", |s| {
            s.seed = 9;
            s.customers = 60;
        });
        let report = import(&f.store, &snap).await.unwrap();
        assert_eq!(report.counts["customers"], 60);
        assert_eq!(
            inode(&db),
            old_inode,
            "the file was not replaced under the other connection"
        );
        assert!(
            leftovers(f.dir.path()).is_empty(),
            "{:?}",
            leftovers(f.dir.path())
        );
        let n: i64 = other
            .query_row("SELECT count(*) FROM customers", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 60, "the other connection sees the new data in the same file");
        let strip = |rows: Vec<(String, Vec<Vec<Value>>)>| -> Vec<(String, Vec<Vec<Value>>)> {
            rows.into_iter()
                .filter(|(t, _)| t != "downlink_streams")
                .collect()
        };
        assert_eq!(strip(local_rows(&f)), strip(local_before));
        // The same cached rows and positions as a fresh store that swapped the file in.
        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh = Store::open(StoreOptions::new(fresh_dir.path().join("store.db"), hasher())).unwrap();
        import(&fresh, &snap).await.unwrap();
        let copied = cached_rows(&f.store);
        assert!(
            copied
                .iter()
                .any(|(t, rows)| t == "cart_lines" && !rows.is_empty())
        );
        assert!(
            copied
                .iter()
                .any(|(t, rows)| t == "order_lines" && !rows.is_empty())
        );
        let swapped = cached_rows(&fresh);
        for ((table, a), (_, b)) in copied.iter().zip(&swapped) {
            let differ: Vec<_> = a.iter().zip(b).filter(|(x, y)| x != y).take(1).collect();
            assert!(
                a.len() == b.len() && differ.is_empty(),
                "{table}: {} vs {} rows, first difference {differ:?}",
                a.len(),
                b.len()
            );
        }
        assert_eq!(f.scalar::<String>("PRAGMA integrity_check"), "ok");
        // The indexes dropped for the copy are back.
        let indexes: i64 =
            f.scalar("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL");
        let fresh_indexes: i64 = fresh
            .reads()
            .with(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(indexes, fresh_indexes);
        fresh.close();

        // Once the other connection is gone, the next full snapshot replaces the file.
        drop(other);
        let report = import(&f.store, &f.dir.path().join("snap.jsonl")).await.unwrap();
        assert_eq!(report.counts["customers"], 200);
        assert_ne!(inode(&db), old_inode);
        assert_eq!(f.count("SELECT count(*) FROM customers"), 200);
        assert_eq!(f.outbox_depth(), 2);
    }

    #[tokio::test]
    async fn a_partial_snapshot_is_loaded_in_place_all_or_nothing() {
        let f = Fixture::new().await;
        let db = f.dir.path().join("store.db");
        let old_inode = inode(&db);
        let full = variant(&f, "more-products.jsonl", |s| s.products = 120);
        let good = products_only(&std::fs::read_to_string(&full).unwrap());
        // A bad product just before the end: everything before it was inserted.
        let mut lines: Vec<&str> = good.lines().collect();
        let at = lines.len() - 2;
        lines[at] =
            r#"{"product":{"gtin":"4006381333932","sku":"X","name":"Bad","price_minor":1,"currency":"EUR"}}"#;
        let bad = f.dir.path().join("bad-products.jsonl");
        std::fs::write(&bad, lines.join("\n")).unwrap();
        let err = import(&f.store, &bad).await.unwrap_err();
        assert!(err.to_string().contains("check digit"), "{err}");
        assert_eq!(
            f.count("SELECT count(*) FROM products"),
            80,
            "nothing of it was kept"
        );

        let part = f.dir.path().join("products.jsonl");
        std::fs::write(&part, good).unwrap();
        let report = import(&f.store, &part).await.unwrap();
        assert_eq!(report.counts["products"], 120);
        assert!(!report.counts.contains_key("customers"));
        assert_eq!(inode(&db), old_inode, "loaded in place");
        assert_eq!(f.count("SELECT count(*) FROM products"), 120);
        assert_eq!(f.count("SELECT count(*) FROM customers"), 200);
    }
}
