//! A deterministic sample store: catalogue, stock, customers with loyalty cards,
//! wishlists, online carts, BOPIS orders ready for pickup, delivered orders to
//! return, and associates — written as a snapshot file that `import` loads.
//!
//! Tests, benchmarks and the demo all use it. The same seed and sizes (and
//! reference time) give the same file byte for byte. Every entity is drawn from
//! its own random stream, keyed by (seed, kind, index), so the raw values a test
//! needs — the card number of customer 17, the pickup code of order 3 — can be
//! computed without generating the file ([`card_number`], [`pickup_code`]).
//!
//! Raw card numbers and pickup codes never enter the file: it holds their keyed
//! hashes, like a snapshot from the cloud.

use crate::domain::bopis::OrderStatus;
use crate::store::KeyedHasher;
use crate::store::entities::{
    AssociateRecord, CartLineRecord, CartRecord, CustomerRecord, LoyaltyCardRecord, OrderLineRecord,
    OrderRecord, ProductRecord, StockRecord, WishlistItemRecord, hash_pin,
};
use crate::store::snapshot::{FORMAT, MAGIC, SnapshotHeader, SnapshotRecord, SnapshotWriter, StreamPosition};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

/// The hashing key the demo and the sample data use when none is configured.
/// Public on purpose: it protects nothing and must never be used in a store.
pub const DEMO_HASH_KEY_HEX: &str = "64656d6f2d6f6e6c792d6b65792d2d6e6f742d666f722d70726f64756374696f6e";

/// The hasher of [`DEMO_HASH_KEY_HEX`]: what the sample data, the demo and the
/// reference cloud's default base data are hashed with.
pub fn demo_hasher() -> KeyedHasher {
    KeyedHasher::new(&hex::decode(DEMO_HASH_KEY_HEX).expect("the demo key is hex"))
        .expect("the demo key is 32 bytes")
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct SampleSpec {
    /// Seed of every random choice.
    pub seed: u64,
    /// Number of customers (each with a loyalty card).
    pub customers: u64,
    /// Number of catalogue products.
    pub products: u64,
    /// Tenant written in the header.
    pub tenant_id: String,
    /// Store written in the header.
    pub store_id: String,
    /// Currency of every price.
    pub currency: String,
    /// "Now" for the data: deadlines and delivery dates are placed around it.
    pub reference_time_ms: i64,
}

impl SampleSpec {
    /// A spec with the demo tenant and store, EUR, and `reference_time_ms` now.
    pub fn new(seed: u64, customers: u64, products: u64) -> SampleSpec {
        SampleSpec {
            seed,
            customers,
            products,
            tenant_id: "demo-tenant".into(),
            store_id: "store-001".into(),
            currency: "EUR".into(),
            reference_time_ms: crate::events::now_ms(),
        }
    }

    /// How many BOPIS orders wait for pickup: a few hundred at most, like a real store.
    pub fn bopis_orders(&self) -> u64 {
        if self.customers == 0 || self.products == 0 {
            return 0;
        }
        (self.customers / 2000).clamp(3, 400)
    }

    /// How many delivered online orders can be returned here.
    pub fn delivered_orders(&self) -> u64 {
        if self.customers == 0 || self.products == 0 {
            return 0;
        }
        (self.customers / 10).max(5)
    }
}

/// An associate of the sample store and the PIN to sign in with.
#[derive(Debug, Clone, Serialize)]
pub struct SampleAssociate {
    /// Staff id.
    pub associate_id: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: String,
    /// The PIN (sample data only; real PINs are never known to the agent).
    pub pin: String,
}

/// What was generated, with a few raw values to try the screens with.
#[derive(Debug, Clone, Serialize)]
pub struct SampleSummary {
    /// Records per kind.
    pub counts: BTreeMap<&'static str, u64>,
    /// (customer id, card number) of the first customers.
    pub example_cards: Vec<(String, String)>,
    /// (order id, pickup code) of the first BOPIS orders.
    pub example_pickups: Vec<(String, String)>,
    /// The associates and their PINs.
    pub associates: Vec<SampleAssociate>,
}

/// SplitMix64: tiny, fast and stable forever (the output of a seed must not change
/// with a crate upgrade).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn for_entity(seed: u64, kind: u64, index: u64) -> Rng {
        let mut r = Rng(seed ^ kind.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.0 = r.0.wrapping_add(index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

// Random-stream kinds.
const K_PRODUCT: u64 = 1;
const K_STOCK: u64 = 2;
const K_CUSTOMER: u64 = 3;
const K_WISHLIST: u64 = 4;
const K_CART: u64 = 5;
const K_BOPIS: u64 = 6;
const K_DELIVERED: u64 = 7;
const K_ASSOCIATE: u64 = 8;
const K_PERMUTE: u64 = 9;

/// `i ↦ (a·i + b) mod m` with `a` coprime to `m` (a power of ten): a bijection,
/// so distinct indexes give distinct numbers that do not look sequential.
fn permute(seed: u64, i: u64, modulus: u64) -> u64 {
    let mut r = Rng::for_entity(seed, K_PERMUTE, modulus);
    let mut a = r.next() % modulus;
    a |= 1;
    if a % 5 == 0 {
        a += 2;
    }
    let b = r.next() % modulus;
    ((u128::from(a) * u128::from(i % modulus) + u128::from(b)) % u128::from(modulus)) as u64
}

fn luhn_check_digit(payload: &str) -> u8 {
    firmware_interfaces::card::luhn_check_digit(payload).expect("digits only")
}

/// The GTIN of product `i` as printed on the pack: every fifth a UPC-A
/// (12 digits), the others EAN-13 with the GS1 Germany prefix 40.
pub fn product_gtin(seed: u64, i: u64) -> String {
    let payload = if i % 5 == 4 {
        format!("07{:09}", permute(seed, i, 1_000_000_000))
    } else {
        format!("40{:010}", permute(seed, i, 10_000_000_000))
    };
    firmware_interfaces::gtin::with_check_digit(&payload).expect("digits only")
}

/// The customer id of customer `i`.
pub fn customer_id(i: u64) -> String {
    format!("C{:08}", i + 1)
}

/// The e-mail address of customer `i` (only its keyed hash is in the data).
pub fn customer_email(i: u64) -> String {
    format!("customer{}@example.com", i + 1)
}

/// The phone number of customer `i` (only its keyed hash and last four digits are
/// in the data).
pub fn customer_phone(i: u64) -> String {
    format!("+49 170 {:07}", i + 1)
}

/// The loyalty card number of customer `i`: 16 digits starting with 9 (never a
/// payment-card range), Luhn check digit last.
pub fn card_number(seed: u64, i: u64) -> String {
    let payload = format!("9{:014}", permute(seed, i, 100_000_000_000_000));
    let d = luhn_check_digit(&payload);
    format!("{payload}{d}")
}

/// An older, blocked card some customers still carry (starts with 7).
fn old_card_number(seed: u64, i: u64) -> String {
    let payload = format!("7{:014}", permute(seed ^ OLD_CARD_STREAM, i, 100_000_000_000_000));
    let d = luhn_check_digit(&payload);
    format!("{payload}{d}")
}

/// Separates the old cards' number space from the current ones'.
const OLD_CARD_STREAM: u64 = 0x01D_CA4D;

/// The order id of BOPIS order `k`.
pub fn bopis_order_id(k: u64) -> String {
    format!("BOPIS-{:06}", k + 1)
}

/// The order id of delivered order `k`.
pub fn delivered_order_id(k: u64) -> String {
    format!("WEB-{:07}", k + 1)
}

/// The pickup code in the order e-mail's QR of BOPIS order `k`.
pub fn pickup_code(seed: u64, k: u64) -> String {
    format!("PU-{:08}", permute(seed ^ 0xB0B15, k, 100_000_000))
}

/// The customer who placed BOPIS order `k` (order 0 belongs to customer 0, so the
/// demo's first card shows a pickup).
pub fn bopis_customer(spec: &SampleSpec, k: u64) -> u64 {
    (k * 7919) % spec.customers.max(1)
}

/// The customer of delivered order `k` (order 0 belongs to customer 0).
pub fn delivered_customer(spec: &SampleSpec, k: u64) -> u64 {
    (k * 104_729) % spec.customers.max(1)
}

const FIRST: &[&str] = &[
    "Ada", "Ben", "Chloé", "David", "Elif", "Fatima", "Grace", "Hugo", "Ines", "Jonas", "Kai", "Lena",
    "Mateo", "Noor", "Olivia", "Pavel", "Quinn", "Rosa", "Søren", "Tomás", "Uma", "Viktor", "Wen", "Yara",
    "Zoë", "José", "Björn", "Amélie", "Łukasz", "Siobhán",
];
const LAST: &[&str] = &[
    "Müller",
    "Smith",
    "García",
    "Nguyen",
    "Kowalski",
    "O'Brien",
    "Rossi",
    "Dubois",
    "Jansen",
    "Yılmaz",
    "Novak",
    "Andersson",
    "Fernández",
    "Schmidt",
    "Brown",
    "Costa",
    "Horvat",
    "Papadopoulos",
    "Larsen",
    "Weiß",
];
const DEPARTMENTS: &[(&str, &[&str])] = &[
    (
        "Footwear",
        &["Running Shoe", "Trail Shoe", "Sneaker", "Sandal", "Boot"],
    ),
    (
        "Apparel",
        &["T-Shirt", "Hoodie", "Rain Jacket", "Chinos", "Sweater"],
    ),
    (
        "Outdoor",
        &["Backpack", "Tent", "Sleeping Bag", "Headlamp", "Water Bottle"],
    ),
    (
        "Home",
        &["Mug", "Throw Blanket", "Desk Lamp", "Cushion", "Candle"],
    ),
    (
        "Electronics",
        &["Earbuds", "Power Bank", "USB-C Cable", "Smart Watch", "Speaker"],
    ),
];
const BRANDS: &[&str] = &[
    "Northwind",
    "Alpenglow",
    "Bluefin",
    "Cedar & Co",
    "Lumen",
    "Kestrel",
];
const COLOURS: &[&str] = &["blue", "black", "red", "green", "grey", "white"];
const TIERS: &[(&str, u64)] = &[("bronze", 60), ("silver", 25), ("gold", 12), ("platinum", 3)];

fn product_record(spec: &SampleSpec, i: u64) -> ProductRecord {
    let mut r = Rng::for_entity(spec.seed, K_PRODUCT, i);
    let (dept, kinds) = DEPARTMENTS[r.below(DEPARTMENTS.len() as u64) as usize];
    let kind = r.pick(kinds);
    let brand = r.pick(BRANDS);
    let colour = r.pick(COLOURS);
    let mut attributes = Map::new();
    attributes.insert("colour".into(), Value::from(colour));
    if dept == "Footwear" {
        attributes.insert("size".into(), Value::from((36 + r.below(12)).to_string()));
    } else if dept == "Apparel" {
        attributes.insert("size".into(), Value::from(r.pick(&["XS", "S", "M", "L", "XL"])));
    }
    // Prices end in 9 or 5 like shelf prices do.
    let price_minor = (r.below(200) as i64 + 1) * 100 + if r.chance(50) { 99 } else { 49 } - 100;
    ProductRecord {
        gtin: product_gtin(spec.seed, i),
        sku: format!("SKU-{:07}", i + 1),
        name: format!("{brand} {kind} {colour}"),
        brand: Some(brand.into()),
        price_minor: price_minor.max(49),
        currency: spec.currency.clone(),
        department: Some(dept.into()),
        attributes,
    }
}

fn stock_record(spec: &SampleSpec, i: u64, reserved: i64) -> Option<StockRecord> {
    let mut r = Rng::for_entity(spec.seed, K_STOCK, i);
    // One product in ten is not carried in this store (endless aisle), unless it is reserved.
    if reserved == 0 && r.chance(10) {
        return None;
    }
    let on_hand = if r.chance(10) { 0 } else { 1 + r.below(40) as i64 };
    Some(StockRecord {
        gtin: product_gtin(spec.seed, i),
        on_hand: on_hand + reserved,
        reserved_bopis: reserved,
        aisle: Some((1 + r.below(24)).to_string()),
        bin: Some(format!("{}{}", (b'A' + r.below(6) as u8) as char, 1 + r.below(6))),
        updated_at_ms: spec.reference_time_ms - r.below(86_400_000) as i64,
    })
}

fn customer_record(spec: &SampleSpec, hasher: &KeyedHasher, i: u64) -> CustomerRecord {
    let mut r = Rng::for_entity(spec.seed, K_CUSTOMER, i);
    let first = r.pick(FIRST);
    let last = r.pick(LAST);
    let mut roll = r.below(100);
    let mut tier = TIERS[0].0;
    for (t, p) in TIERS {
        if roll < *p {
            tier = t;
            break;
        }
        roll -= p;
    }
    let mut preferences = Map::new();
    preferences.insert("shoe_size".into(), Value::from((36 + r.below(12)).to_string()));
    preferences.insert("favourite_brand".into(), Value::from(r.pick(BRANDS)));
    let mut consent = Map::new();
    consent.insert("marketing_email".into(), Value::from(r.chance(55)));
    consent.insert("personalisation".into(), Value::from(r.chance(70)));
    CustomerRecord {
        customer_id: customer_id(i),
        display_name: format!("{first} {}.", last.chars().next().unwrap_or('X')),
        first_name: Some(first.into()),
        last_name: Some(last.into()),
        tier: Some(tier.into()),
        points: r.below(20_000) as i64,
        preferences,
        consent,
        home_store: Some(if r.chance(80) {
            spec.store_id.clone()
        } else {
            format!("store-{:03}", 2 + r.below(40))
        }),
        last_seen_ms: Some(spec.reference_time_ms - r.below(90 * 86_400_000) as i64),
        email_hash: Some(hex::encode(hasher.email_hash(&customer_email(i)))),
        phone_hash: Some(hex::encode(hasher.phone_hash(&customer_phone(i)))),
        phone_last4: Some(format!("{:04}", (i + 1) % 10_000)),
    }
}

fn wishlist_records(spec: &SampleSpec, i: u64) -> Vec<WishlistItemRecord> {
    let mut r = Rng::for_entity(spec.seed, K_WISHLIST, i);
    // The first customers always have one, so the demo's first cards show something.
    if !(i < 5 || r.chance(30)) {
        return Vec::new();
    }
    let n = 1 + r.below(6);
    let mut seen = std::collections::BTreeSet::new();
    (0..n)
        .filter_map(|j| {
            let p = r.below(spec.products);
            if !seen.insert(p) {
                return None;
            }
            let at = spec.reference_time_ms - r.below(120 * 86_400_000) as i64;
            Some(WishlistItemRecord {
                customer_id: customer_id(i),
                gtin: product_gtin(spec.seed, p),
                present: true,
                added_at_ms: Some(at),
                channel: r.pick(&["web", "app"]).into(),
                op_at_ms: at,
                op_id: format!("sample-{i}-{j}"),
            })
        })
        .collect()
}

fn cart_record(spec: &SampleSpec, i: u64) -> Option<CartRecord> {
    let mut r = Rng::for_entity(spec.seed, K_CART, i);
    if !(i < 5 || r.chance(12)) {
        return None;
    }
    let n = 1 + r.below(4) as u32;
    let lines = (1..=n)
        .map(|line_no| {
            let p = r.below(spec.products);
            CartLineRecord {
                line_no,
                gtin: product_gtin(spec.seed, p),
                qty: 1 + r.below(2) as u32,
                unit_price_minor: product_record(spec, p).price_minor,
            }
        })
        .collect();
    Some(CartRecord {
        customer_id: customer_id(i),
        currency: spec.currency.clone(),
        updated_at_ms: spec.reference_time_ms - r.below(14 * 86_400_000) as i64,
        lines,
    })
}

/// (product index, qty) lines of an order drawn from `r`.
fn order_lines(spec: &SampleSpec, r: &mut Rng, max_lines: u64) -> Vec<(u64, u32)> {
    let n = 1 + r.below(max_lines);
    let mut seen = std::collections::BTreeSet::new();
    (0..n)
        .filter_map(|_| {
            let p = r.below(spec.products);
            seen.insert(p).then(|| (p, 1 + r.below(2) as u32))
        })
        .collect()
}

fn to_order(
    spec: &SampleSpec,
    order_id: String,
    customer: u64,
    lines: &[(u64, u32)],
    r: &mut Rng,
) -> OrderRecord {
    let lines: Vec<OrderLineRecord> = lines
        .iter()
        .enumerate()
        .map(|(n, &(p, qty))| {
            let product = product_record(spec, p);
            OrderLineRecord {
                line_no: n as u32 + 1,
                gtin: product.gtin,
                name: product.name,
                qty_ordered: qty,
                qty_returned: 0,
                unit_price_minor: product.price_minor,
                final_sale: r.chance(10),
            }
        })
        .collect();
    let total_minor = lines
        .iter()
        .map(|l| l.unit_price_minor * i64::from(l.qty_ordered))
        .sum();
    OrderRecord {
        order_id,
        customer_id: Some(customer_id(customer)),
        kind: String::new(),
        status: OrderStatus::ReadyForPickup,
        currency: spec.currency.clone(),
        total_minor,
        placed_at_ms: 0,
        pickup_code_hash: None,
        pickup_deadline_ms: None,
        fulfilled_at_ms: None,
        lines,
    }
}

fn bopis_lines(spec: &SampleSpec, k: u64) -> (Rng, Vec<(u64, u32)>) {
    let mut r = Rng::for_entity(spec.seed, K_BOPIS, k);
    let lines = order_lines(spec, &mut r, 3);
    (r, lines)
}

fn bopis_order(spec: &SampleSpec, hasher: &KeyedHasher, k: u64) -> OrderRecord {
    let (mut r, lines) = bopis_lines(spec, k);
    let mut o = to_order(spec, bopis_order_id(k), bopis_customer(spec, k), &lines, &mut r);
    for l in &mut o.lines {
        l.final_sale = false;
    }
    let day = 86_400_000;
    o.kind = "bopis".into();
    o.placed_at_ms = spec.reference_time_ms - (1 + r.below(3)) as i64 * day;
    // One order in ten is overdue: its deadline has passed, waiting for expiry.
    o.pickup_deadline_ms = Some(if k > 0 && r.chance(10) {
        spec.reference_time_ms - r.below(day as u64) as i64
    } else {
        spec.reference_time_ms + (2 + r.below(5)) as i64 * day
    });
    o.pickup_code_hash = Some(hex::encode(hasher.pickup_code_hash(&pickup_code(spec.seed, k))));
    o
}

fn delivered_order(spec: &SampleSpec, k: u64) -> OrderRecord {
    let mut r = Rng::for_entity(spec.seed, K_DELIVERED, k);
    let lines = order_lines(spec, &mut r, 4);
    let mut o = to_order(
        spec,
        delivered_order_id(k),
        delivered_customer(spec, k),
        &lines,
        &mut r,
    );
    let day = 86_400_000;
    o.kind = "delivered".into();
    o.status = OrderStatus::HandedOver;
    // Delivered 1 to 45 days ago: about a third fall outside a 30-day window.
    // Order 0 is always recent, so the demo can return it.
    let days_ago = if k == 0 { 3 } else { 1 + r.below(45) as i64 };
    o.fulfilled_at_ms = Some(spec.reference_time_ms - days_ago * day);
    o.placed_at_ms = o.fulfilled_at_ms.unwrap_or(0) - 3 * day;
    if k == 0 {
        for l in &mut o.lines {
            l.final_sale = false;
        }
    } else if let Some(first) = o.lines.first_mut() {
        if first.qty_ordered > 1 && r.chance(20) {
            first.qty_returned = 1;
        }
    }
    o
}

fn associates(
    spec: &SampleSpec,
) -> Result<Vec<(AssociateRecord, SampleAssociate)>, crate::store::StoreError> {
    let staff = [
        ("A001", "Sam Rivera", "associate"),
        ("A002", "Priya Shah", "associate"),
        ("M001", "Jordan Lee", "manager"),
        ("X001", "Store IT", "admin"),
    ];
    staff
        .iter()
        .enumerate()
        .map(|(i, (id, name, role))| {
            let mut r = Rng::for_entity(spec.seed, K_ASSOCIATE, i as u64);
            let pin = format!("{:04}", r.below(10_000));
            let salt: Vec<u8> = (0..2).flat_map(|_| r.next().to_le_bytes()).collect();
            let record = AssociateRecord {
                associate_id: (*id).into(),
                name: (*name).into(),
                role: (*role).into(),
                pin_hash: hash_pin(&pin, &salt)?,
                active: true,
            };
            Ok((
                record,
                SampleAssociate {
                    associate_id: (*id).into(),
                    name: (*name).into(),
                    role: (*role).into(),
                    pin,
                },
            ))
        })
        .collect()
}

/// Writes the sample store as a snapshot to `out`.
pub fn write_snapshot<W: Write>(
    spec: &SampleSpec,
    hasher: &KeyedHasher,
    out: W,
) -> anyhow::Result<SampleSummary> {
    // Every cloud stream, also those the sample has no records of (config,
    // erasure): a store loaded from it then has a position everywhere.
    let streams: BTreeMap<String, StreamPosition> = crate::events::DownlinkStream::ALL
        .iter()
        .map(|s| {
            (
                s.as_str().to_string(),
                StreamPosition {
                    epoch: format!("sample-{}", spec.seed),
                    seq: 0,
                },
            )
        })
        .collect();
    let header = SnapshotHeader {
        snapshot: MAGIC.into(),
        format: FORMAT,
        tenant_id: spec.tenant_id.clone(),
        store_id: spec.store_id.clone(),
        created_at_ms: spec.reference_time_ms,
        key_fingerprint: hasher.fingerprint(),
        streams,
    };
    let mut w = SnapshotWriter::new(std::io::BufWriter::with_capacity(1 << 20, out), &header)?;
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut put = |w: &mut SnapshotWriter<_>, kind: &'static str, r: SnapshotRecord| -> std::io::Result<()> {
        *counts.entry(kind).or_default() += 1;
        w.record(&r)
    };

    // BOPIS reservations decide the stock's reserved counts, so draw them first.
    let mut reserved: HashMap<u64, i64> = HashMap::new();
    for k in 0..spec.bopis_orders() {
        for (p, qty) in bopis_lines(spec, k).1 {
            *reserved.entry(p).or_default() += i64::from(qty);
        }
    }
    for i in 0..spec.products {
        put(
            &mut w,
            "products",
            SnapshotRecord::Product(product_record(spec, i)),
        )?;
    }
    for i in 0..spec.products {
        if let Some(s) = stock_record(spec, i, reserved.get(&i).copied().unwrap_or(0)) {
            put(&mut w, "stock", SnapshotRecord::Stock(s))?;
        }
    }
    for i in 0..spec.customers {
        put(
            &mut w,
            "customers",
            SnapshotRecord::Customer(customer_record(spec, hasher, i)),
        )?;
        put(
            &mut w,
            "loyalty_cards",
            SnapshotRecord::LoyaltyCard(LoyaltyCardRecord {
                card_hash: hex::encode(hasher.card_hash(&card_number(spec.seed, i))),
                customer_id: customer_id(i),
                status: "active".into(),
            }),
        )?;
        if i % 20 == 7 {
            put(
                &mut w,
                "loyalty_cards",
                SnapshotRecord::LoyaltyCard(LoyaltyCardRecord {
                    card_hash: hex::encode(hasher.card_hash(&old_card_number(spec.seed, i))),
                    customer_id: customer_id(i),
                    status: "blocked".into(),
                }),
            )?;
        }
        if spec.products > 0 {
            for item in wishlist_records(spec, i) {
                put(&mut w, "wishlist_items", SnapshotRecord::WishlistItem(item))?;
            }
            if let Some(c) = cart_record(spec, i) {
                put(&mut w, "carts", SnapshotRecord::Cart(c))?;
            }
        }
    }
    for k in 0..spec.bopis_orders() {
        put(
            &mut w,
            "orders",
            SnapshotRecord::Order(bopis_order(spec, hasher, k)),
        )?;
    }
    for k in 0..spec.delivered_orders() {
        put(&mut w, "orders", SnapshotRecord::Order(delivered_order(spec, k)))?;
    }
    let staff = associates(spec)?;
    for (record, _) in &staff {
        put(&mut w, "associates", SnapshotRecord::Associate(record.clone()))?;
    }
    w.finish()?;

    let shown = spec.customers.min(5);
    Ok(SampleSummary {
        counts,
        example_cards: (0..shown)
            .map(|i| (customer_id(i), card_number(spec.seed, i)))
            .collect(),
        example_pickups: (0..spec.bopis_orders().min(5))
            .map(|k| (bopis_order_id(k), pickup_code(spec.seed, k)))
            .collect(),
        associates: staff.into_iter().map(|(_, a)| a).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> KeyedHasher {
        demo_hasher()
    }

    fn spec() -> SampleSpec {
        let mut s = SampleSpec::new(42, 300, 200);
        s.reference_time_ms = 1_790_000_000_000;
        s
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let a = {
            let mut v = Vec::new();
            write_snapshot(&spec(), &hasher(), &mut v).unwrap();
            v
        };
        let b = {
            let mut v = Vec::new();
            write_snapshot(&spec(), &hasher(), &mut v).unwrap();
            v
        };
        assert_eq!(a, b);
        let mut other = spec();
        other.seed = 43;
        let mut c = Vec::new();
        write_snapshot(&other, &hasher(), &mut c).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn gtins_are_valid_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..5000 {
            let g = product_gtin(7, i);
            assert!(matches!(g.len(), 12 | 13), "{g}");
            firmware_interfaces::gtin::validate(&g).unwrap();
            assert!(
                seen.insert(firmware_interfaces::gtin::to_gtin14(&g).unwrap()),
                "duplicate {g}"
            );
        }
    }

    #[test]
    fn card_numbers_are_loyalty_numbers_with_luhn_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..5000 {
            let c = card_number(7, i);
            assert_eq!(c.len(), 16);
            assert!(c.starts_with('9'), "payment ranges start with 1-6: {c}");
            assert_eq!(luhn_check_digit(&c[..15]), c.as_bytes()[15] - b'0');
            assert!(seen.insert(c));
        }
        // A known Luhn example (Visa's public test number) checks the algorithm itself.
        assert_eq!(luhn_check_digit("411111111111111"), 1);
    }

    #[test]
    fn file_holds_hashes_not_card_numbers_or_pickup_codes() {
        let mut v = Vec::new();
        let s = spec();
        write_snapshot(&s, &hasher(), &mut v).unwrap();
        let text = String::from_utf8(v).unwrap();
        for i in 0..s.customers {
            assert!(!text.contains(&card_number(s.seed, i)));
        }
        for k in 0..s.bopis_orders() {
            assert!(!text.contains(&pickup_code(s.seed, k)));
        }
        assert!(text.contains(&hex::encode(hasher().card_hash(&card_number(s.seed, 0)))));
    }

    #[test]
    fn summary_counts_match_sizes() {
        let s = spec();
        let summary = write_snapshot(&s, &hasher(), std::io::sink()).unwrap();
        assert_eq!(summary.counts["customers"], 300);
        assert_eq!(summary.counts["products"], 200);
        assert!(summary.counts["loyalty_cards"] >= 300);
        assert_eq!(summary.counts["orders"], s.bopis_orders() + s.delivered_orders());
        assert_eq!(summary.associates.len(), 4);
        assert!(summary.counts["wishlist_items"] > 0 && summary.counts["carts"] > 0);
    }
}
