//! Hand-written documents for the parser's rules and refusals; the real exports
//! are checked in `tests/poslog_corpus.rs`.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

/// A small POSLog 6.0 sale: one item, a cash tender with change, a vendor field
/// inside the sale and one directly in the transaction.
const SALE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<POSLog xmlns="http://www.nrf-arts.org/IXRetail/namespace/" xmlns:fu="urn:vendor:futura">
  <Transaction>
    <BusinessUnit><UnitID TypeCode="RetailStore">300</UnitID></BusinessUnit>
    <WorkstationID>30001</WorkstationID>
    <SequenceNumber>0042</SequenceNumber>
    <OperatorID>7</OperatorID>
    <RetailTransaction>
      <LineItem EntryMethod="Scanned" VoidFlag="false">
        <SequenceNumber>1</SequenceNumber>
        <Sale>
          <POSIdentity POSIDType="GTIN"><POSItemID>4006381333931</POSItemID></POSIdentity>
          <ItemID Name="Pen &amp; paper">4006381333931</ItemID>
          <RegularSalesUnitPrice>1.495</RegularSalesUnitPrice>
          <ExtendedAmount>2.990</ExtendedAmount>
          <Quantity UnitOfMeasureCode="EA">2</Quantity>
          <Tax><Amount>0.48</Amount></Tax>
          <fu:SalesMode>MODE_NORMAL</fu:SalesMode>
        </Sale>
      </LineItem>
      <LineItem>
        <Tender TenderType="Cash"><Amount Currency="EUR">5.00</Amount></Tender>
        <SequenceNumber>2</SequenceNumber>
      </LineItem>
      <LineItem>
        <TenderChange><TenderChange TenderType="Cash"><Amount>2.01</Amount></TenderChange></TenderChange>
      </LineItem>
      <Total TotalType="TransactionGrandAmount" CurrencyCode="EUR">2.990</Total>
      <Total TotalType="TransactionTaxAmount">0.48</Total>
      <LoyaltyAccount><CustomerID>22000129</CustomerID></LoyaltyAccount>
    </RetailTransaction>
    <BusinessDayDate>2024-09-26</BusinessDayDate>
    <fu:Hashcode>abc</fu:Hashcode>
  </Transaction>
</POSLog>
"#;

fn parse(xml: &str) -> Result<Vec<PosLogTransaction>, PosLogError> {
    parse_poslog(xml.as_bytes())
}

/// `SALE` with `from` replaced by `to` (which must occur).
fn sale_with(from: &str, to: &str) -> String {
    assert!(SALE.contains(from), "{from}");
    SALE.replacen(from, to, 1)
}

#[test]
fn reads_a_minimal_sale() {
    let transactions = parse(SALE).unwrap();
    assert_eq!(transactions.len(), 1);
    let t = &transactions[0];
    assert_eq!(t.store_id.as_deref(), Some("300"));
    assert_eq!(t.workstation_id, "30001");
    assert_eq!(t.sequence_number, "0042");
    assert_eq!(t.business_day.as_deref(), Some("2024-09-26"));
    assert_eq!(t.operator_id.as_deref(), Some("7"));
    assert_eq!(t.currency.as_deref(), Some("EUR"));
    assert_eq!(t.transaction_type.as_deref(), Some("RetailTransaction"));
    assert_eq!(t.grand_total.as_deref(), Some("2.990"));
    assert_eq!(t.total("TransactionTaxAmount"), Some("0.48"));
    assert_eq!(t.loyalty_account_id.as_deref(), Some("22000129"));
    assert_eq!(t.customer_id, None);

    let kinds: Vec<&str> = t.line_items.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(kinds, ["Sale", "Tender", "TenderChange"]);

    let sale = &t.line_items[0];
    assert_eq!(sale.sequence_number, Some(1));
    assert_eq!(sale.entry_method.as_deref(), Some("Scanned"));
    assert!(!sale.void && !sale.cancelled && !sale.deleted);
    assert_eq!(sale.item_id.as_deref(), Some("4006381333931"));
    assert_eq!(sale.gtin.as_deref(), Some("4006381333931"));
    assert_eq!(sale.description.as_deref(), Some("Pen & paper"));
    assert_eq!(sale.quantity.as_deref(), Some("2"));
    assert_eq!(sale.quantity_thousandths, Some(2000));
    assert_eq!(sale.unit_of_measure.as_deref(), Some("EA"));
    assert_eq!(sale.regular_unit_price.as_deref(), Some("1.495"));
    assert_eq!(sale.extended_amount.as_deref(), Some("2.990"));
    assert_eq!(sale.tax_amounts, ["0.48"]);
    assert_eq!(
        to_minor_units(sale.extended_amount.as_deref().unwrap(), 2).unwrap(),
        299
    );

    let tender = &t.line_items[1];
    assert_eq!(tender.tender_type.as_deref(), Some("Cash"));
    assert_eq!(tender.tender_amount.as_deref(), Some("5.00"));
    let change = &t.line_items[2];
    assert_eq!(change.sequence_number, None);
    assert_eq!(change.tender_type.as_deref(), Some("Cash"));
    assert_eq!(change.tender_amount.as_deref(), Some("2.01"));
}

#[test]
fn vendor_elements_are_kept_with_their_prefix() {
    let t = &parse(SALE).unwrap()[0];
    let sale = &t.line_items[0];
    assert_eq!(sale.extensions.len(), 1);
    assert_eq!(sale.extensions[0].name, "fu:SalesMode");
    assert_eq!(sale.extensions[0].text, "MODE_NORMAL");
    assert_eq!(t.extensions.len(), 1);
    assert_eq!(t.extensions[0].name, "fu:Hashcode");

    // A whole line item in an unknown vendor namespace is a line of that kind.
    let xml = sale_with(
        "<LineItem>\n        <Tender",
        r#"<LineItem><SequenceNumber>9</SequenceNumber><x:Coupon xmlns:x="urn:other" x:Kind="a"><x:Code>C1</x:Code></x:Coupon></LineItem>
      <LineItem>
        <Tender"#,
    );
    let t = &parse(&xml).unwrap()[0];
    let coupon = &t.line_items[1];
    assert_eq!(coupon.kind, "x:Coupon");
    assert_eq!(coupon.sequence_number, Some(9));
    let kept = &coupon.extensions[0];
    assert_eq!(kept.name, "x:Coupon");
    assert_eq!(kept.attributes, [("x:Kind".to_owned(), "a".to_owned())]);
    assert_eq!(kept.children[0].name, "x:Code");
    assert_eq!(kept.children[0].text, "C1");
}

/// Regression: vendor elements were kept whole, so a card number inside one (or a
/// vendor element named `PrimaryAccountNumber`) was copied out of the document.
/// The first input is the one the `poslog` fuzz target's no-card-data assertion
/// failed on, minimised by libFuzzer.
#[test]
fn vendor_elements_never_keep_a_card_number() {
    let minimised: &[u8] = b"<POSLog <s=\"hs\"><Transaction><WorkstationID>3</WorkstationID><SequenceNumber>1</SequenceNumber>i<acs:PrimaryAccountNumber></acs:PrimaryAccountNumber></Transaction></POSLog>";
    let t = &parse_poslog(minimised).unwrap()[0];
    assert_eq!(t.extensions, []);

    let xml = sale_with(
        "<fu:SalesMode>",
        r#"<fu:Card fu:PrimaryAccountNumber="4111111111111111" fu:Scheme="VISA"><PrimaryAccountNumber>4111111111111111</PrimaryAccountNumber><fu:PrimaryAccountNumber>************1111</fu:PrimaryAccountNumber><fu:Last4>1111</fu:Last4></fu:Card><fu:SalesMode>"#,
    );
    let t = &parse(&xml).unwrap()[0];
    let card = &t.line_items[0].extensions[0];
    assert_eq!(card.name, "fu:Card");
    assert_eq!(card.attributes, [("fu:Scheme".to_owned(), "VISA".to_owned())]);
    let children: Vec<&str> = card.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(children, ["fu:Last4"]);
    let everything = format!("{t:?}");
    assert!(!everything.contains("4111"), "{everything}");
}

#[test]
fn a_vendor_default_namespace_makes_vendor_elements() {
    let xml = sale_with(
        "<fu:SalesMode>",
        r#"<Ext xmlns="urn:vendor:pos"><Code>1</Code></Ext><fu:SalesMode>"#,
    );
    let t = &parse(&xml).unwrap()[0];
    let names: Vec<&str> = t.line_items[0]
        .extensions
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["Ext", "fu:SalesMode"]);
    assert_eq!(t.line_items[0].extensions[0].children[0].name, "Code");
}

#[test]
fn arts_elements_match_whatever_the_prefix_or_namespace() {
    let prefixed = r#"<p:POSLog xmlns:p="http://www.nrf-arts.org/IXRetail/v6.0.0/poslog">
        <p:Transaction><p:RetailStoreID>9</p:RetailStoreID><p:WorkstationID>34</p:WorkstationID>
        <p:SequenceNumber>161</p:SequenceNumber><p:CurrencyCode>USD</p:CurrencyCode>
        <p:ControlTransaction/></p:Transaction></p:POSLog>"#;
    let no_namespace = "<POSLog><Transaction><WorkstationID>34</WorkstationID>\
        <SequenceNumber>161</SequenceNumber><ControlTransaction/></Transaction></POSLog>";
    let other_default = r#"<POSLog xmlns="urn:some:other"><Transaction><WorkstationID>34</WorkstationID>
        <SequenceNumber>161</SequenceNumber></Transaction></POSLog>"#;
    let lone_transaction = "<Transaction><WorkstationID>34</WorkstationID>\
        <SequenceNumber>161</SequenceNumber></Transaction>";
    for xml in [prefixed, no_namespace, other_default, lone_transaction] {
        let t = &parse(xml).unwrap_or_else(|e| panic!("{e}\n{xml}"))[0];
        assert_eq!(t.workstation_id, "34");
        assert_eq!(t.sequence_number, "161");
    }
    let t = &parse(prefixed).unwrap()[0];
    assert_eq!(t.store_id.as_deref(), Some("9"));
    assert_eq!(t.currency.as_deref(), Some("USD"));
    assert_eq!(t.transaction_type.as_deref(), Some("ControlTransaction"));
}

#[test]
fn a_malformed_document_names_the_line() {
    let xml = sale_with("</OperatorID>", "</Operator>");
    let err = parse(&xml).unwrap_err();
    assert!(matches!(err, PosLogError::Malformed { line: 7, .. }), "{err:?}");
    assert!(err.to_string().starts_with("line 7, column "), "{err}");

    let truncated = &SALE[..SALE.find("<Total ").unwrap()];
    let err = parse(truncated).unwrap_err();
    assert!(matches!(err, PosLogError::Malformed { .. }), "{err:?}");
}

#[test]
fn a_bad_sequence_number_names_line_path_and_field() {
    let xml = sale_with(
        "<SequenceNumber>1</SequenceNumber>",
        "<SequenceNumber>1a</SequenceNumber>",
    );
    let err = parse(&xml).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"line 10: Transaction/RetailTransaction/LineItem: SequenceNumber is not a number: "1a""#
    );
}

#[test]
fn required_fields_and_value_forms_are_checked() {
    let err = parse(&sale_with("<WorkstationID>30001</WorkstationID>", "")).unwrap_err();
    assert_eq!(err.to_string(), "line 3: Transaction: WorkstationID is missing");

    let err = parse(&sale_with("<SequenceNumber>0042</SequenceNumber>", "")).unwrap_err();
    assert!(
        matches!(
            &err,
            PosLogError::MissingField {
                field: "SequenceNumber",
                ..
            }
        ),
        "{err}"
    );

    let err = parse(&sale_with("<ExtendedAmount>2.990", "<ExtendedAmount>2,99")).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "line 15: Transaction/RetailTransaction/LineItem/Sale: ExtendedAmount is not a decimal number"
        ),
        "{err}"
    );

    let err = parse(&sale_with(r#"VoidFlag="false""#, r#"VoidFlag="maybe""#)).unwrap_err();
    assert!(err.to_string().contains("@VoidFlag is not a boolean"), "{err}");

    let err = parse(&sale_with(">2</Quantity>", ">0.0005</Quantity>")).unwrap_err();
    assert!(
        err.to_string().contains("Quantity has significant digits"),
        "{err}"
    );

    let voided = parse(&sale_with(r#"VoidFlag="false""#, r#"VoidFlag="true""#)).unwrap();
    assert!(voided[0].line_items[0].void);
}

#[test]
fn the_root_must_be_poslog_with_transactions() {
    let err = parse("<Invoice><Transaction/></Invoice>").unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 1: the root element is <Invoice>, not <POSLog> or <Transaction>"
    );
    let err = parse("<?xml version=\"1.0\"?>\n<POSLog>\n</POSLog>").unwrap_err();
    assert!(matches!(err, PosLogError::NoTransaction { line: 2 }), "{err:?}");
    assert!(matches!(parse("").unwrap_err(), PosLogError::Malformed { .. }));
    assert!(matches!(
        parse("<POSLog/><POSLog/>").unwrap_err(),
        PosLogError::Malformed { .. }
    ));
}

#[test]
fn a_billion_laughs_bomb_is_refused_quickly() {
    let mut bomb = String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE POSLog [\n<!ENTITY lol \"lol\">\n");
    for i in 1..10 {
        let previous = if i == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", i - 1)
        };
        bomb.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">\n",
            format!("&{previous};").repeat(10)
        ));
    }
    bomb.push_str("]>\n<POSLog><Transaction><WorkstationID>&lol9;</WorkstationID></Transaction></POSLog>");
    let started = Instant::now();
    let err = parse(&bomb).unwrap_err();
    assert!(matches!(err, PosLogError::DoctypeRefused { line: 2 }), "{err:?}");
    assert!(err.to_string().contains("entity-expansion"), "{err}");
    // Generous: the refusal happens before any expansion, in microseconds.
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn doctypes_and_undeclared_entities_are_refused() {
    let internal = "<!DOCTYPE POSLog [<!ELEMENT POSLog ANY>]><POSLog/>";
    assert!(matches!(
        parse(internal).unwrap_err(),
        PosLogError::DoctypeRefused { line: 1 }
    ));
    // A DOCTYPE naming only an external DTD declares nothing here; it is ignored
    // and never fetched.
    let external = SALE.replacen("<POSLog", "<!DOCTYPE POSLog SYSTEM \"poslog.dtd\">\n<POSLog", 1);
    assert_eq!(parse(&external).unwrap().len(), 1);
    // An entity that some external DTD would define is never looked up.
    let xml = sale_with("<OperatorID>7", "<OperatorID>&xxe;");
    let err = parse(&xml).unwrap_err();
    assert_eq!(
        err,
        PosLogError::EntityRefused {
            line: 7,
            path: "POSLog/Transaction/OperatorID".into(),
            name: "xxe".into(),
        }
    );
    let err = parse(&sale_with(r#"Name="Pen &amp; paper""#, r#"Name="&xxe;""#)).unwrap_err();
    assert!(matches!(err, PosLogError::EntityRefused { .. }), "{err:?}");
    // Character references are fine.
    let t = parse(&sale_with("<OperatorID>7", "<OperatorID>&#x37;&lt;7")).unwrap();
    assert_eq!(t[0].operator_id.as_deref(), Some("7<7"));
}

#[test]
fn size_depth_and_encoding_are_capped() {
    let huge = vec![b' '; MAX_POSLOG_BYTES + 1];
    assert!(matches!(
        parse_poslog(&huge).unwrap_err(),
        PosLogError::TooLarge { .. }
    ));

    let deep = format!(
        "<POSLog><Transaction>{}{}</Transaction></POSLog>",
        "<a>".repeat(100),
        "</a>".repeat(100)
    );
    assert!(matches!(
        parse(&deep).unwrap_err(),
        PosLogError::TooDeep { limit: 64, .. }
    ));

    let flood = format!(
        "<POSLog><Transaction>{}</Transaction></POSLog>",
        "<a/>".repeat(100_001)
    );
    assert!(matches!(
        parse(&flood).unwrap_err(),
        PosLogError::TransactionTooLarge {
            line: 1,
            limit: 100_000
        }
    ));

    let crowded = sale_with(
        "<Sale>",
        &format!(
            "<Sale {}>",
            (0..300)
                .map(|i| format!("xmlns:p{i}=\"urn:{i}\""))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );
    let err = parse(&crowded).unwrap_err();
    assert!(err.to_string().contains("more than 256 attributes"), "{err}");

    let latin1 = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><POSLog/>";
    assert!(matches!(
        parse(latin1).unwrap_err(),
        PosLogError::UnsupportedEncoding { .. }
    ));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_poslog(&bytes);
    }

    #[test]
    fn xml_like_text_never_panics(text in r#"[<>/a-zA-Z:="'&;#!\[\] ?-]{0,200}"#) {
        let _ = parse_poslog(text.as_bytes());
    }

    #[test]
    fn truncation_never_panics(cut in 0..SALE.len()) {
        // A truncated document is an error, except that a cut in the trailing
        // whitespace leaves a complete one.
        let result = parse_poslog(&SALE.as_bytes()[..cut]);
        prop_assert_eq!(result.is_ok(), SALE[..cut].trim_end().ends_with("</POSLog>"));
    }

    #[test]
    fn amounts_with_their_decimal_places_convert_exactly(
        minor in any::<i32>(),
        exponent in 1u8..6,
    ) {
        let scale = 10_i64.pow(u32::from(exponent));
        let value = i64::from(minor);
        let sign = if value < 0 { "-" } else { "" };
        let text = format!(
            "{sign}{}.{:0width$}",
            value.abs() / scale,
            value.abs() % scale,
            width = usize::from(exponent)
        );
        prop_assert_eq!(to_minor_units(&text, exponent).unwrap(), value);
        // Trailing zeros beyond the exponent change nothing.
        prop_assert_eq!(to_minor_units(&format!("{text}000"), exponent).unwrap(), value);
    }
}
