//! ARTS POSLog XML in, typed POS transactions out.
//!
//! [`parse_poslog`] reads a POSLog document — the ARTS/NRF standard XML in which
//! POS systems log their transactions — and returns one [`PosLogTransaction`] per
//! `Transaction`: who and where (store, workstation, sequence number, business
//! day, operator), what kind of transaction, its line items (sales, returns,
//! tenders, taxes, …) and its totals. The agent stores and forwards these; this
//! module knows nothing of where they go.
//!
//! Invariants:
//! * **Namespace-tolerant.** ARTS elements are matched by local name, whatever
//!   their prefix or namespace: POSLog 6.0 (`http://www.nrf-arts.org/IXRetail/namespace/`),
//!   `…/IXRetail/v6.0.0/poslog`, NCR ACS documents, documents without namespace.
//!   An element is *ARTS* when it has no prefix or its prefix is bound to an
//!   `nrf-arts` namespace; any other element is a *vendor extension* (`fu:`,
//!   `acs:`), which is kept ([`ExtensionElement`]) and never an error. Vendor
//!   names keep their prefix as written (`acs:CRMCustomVariable`).
//! * **No floats.** Amounts and quantities stay as the decimal text the POS wrote
//!   (`"26.990"`), checked to be plain decimal numbers; [`to_minor_units`]
//!   converts such text to an integer exactly, or refuses.
//! * **Untrusted input.** Documents above [`MAX_POSLOG_BYTES`] are refused; no
//!   entity beyond the five predefined XML ones is expanded; a DOCTYPE with an
//!   internal subset or entity declarations is refused before anything is
//!   expanded (XML bombs); elements nest at most 64 deep; one transaction holds
//!   at most 100 000 elements. Work is linear in the input and nothing panics on
//!   any input.
//! * **Errors say what and where**: the line (and column for XML syntax errors)
//!   and the element path, e.g.
//!   `line 12: Transaction/RetailTransaction/LineItem: SequenceNumber is not a number: "x"`.
//!   Unknown elements are ignored, not errors.
//! * **No card data.** Card numbers (`PrimaryAccountNumber`, masked or not) are
//!   never copied out of the document, not even from inside a vendor extension:
//!   an element or attribute of that local name is left out of [`ExtensionElement`]s.

mod decimal;
mod extract;
mod redact;
mod xml;

use serde::{Deserialize, Serialize};

pub use decimal::to_minor_units;
pub use redact::{redact, redact_stream};

/// The largest POSLog document accepted, in bytes. A store's POS writes one
/// document per transaction or per batch; 16 MiB is far above any real batch and
/// bounds the memory a hostile or runaway file can take.
pub const MAX_POSLOG_BYTES: usize = 16 * 1024 * 1024;

/// Parses a POSLog document into its transactions, in document order.
///
/// The root element is `POSLog` (its `Transaction` children are read) or a lone
/// `Transaction`. The input must be UTF-8 (or ASCII), as all known POS exports are.
///
/// # Errors
///
/// A [`PosLogError`] naming the line and element path when the input is larger
/// than [`MAX_POSLOG_BYTES`], is not well-formed XML, declares entities or an
/// internal DTD subset, nests too deep, has no POSLog/Transaction root or no
/// transaction, or when a transaction lacks its `WorkstationID` or
/// `SequenceNumber` or holds a value of the wrong form (a sequence number that is
/// not a number, an amount that is not a decimal number, a flag that is not a
/// boolean). Nothing is returned for a document with any error: a caller keeps
/// the whole document aside for a person to look at.
pub fn parse_poslog(xml: &[u8]) -> Result<Vec<PosLogTransaction>, PosLogError> {
    if xml.len() > MAX_POSLOG_BYTES {
        return Err(PosLogError::TooLarge {
            size: xml.len(),
            limit: MAX_POSLOG_BYTES,
        });
    }
    let mut transactions = Vec::new();
    xml::read_transactions(xml, |node| {
        transactions.push(extract::transaction(xml, &node)?);
        Ok(())
    })?;
    Ok(transactions)
}

/// One POSLog `Transaction`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosLogTransaction {
    /// The store: `BusinessUnit/UnitID` (the one with `TypeCode="RetailStore"`
    /// when there are several), or NCR's `RetailStoreID`. `None` when absent.
    pub store_id: Option<String>,
    /// `WorkstationID`: the till or device that recorded the transaction. Required.
    pub workstation_id: String,
    /// `SequenceNumber` as written (digits only; leading zeros kept, since it is
    /// part of the transaction's identity). Required.
    pub sequence_number: String,
    /// `BusinessDayDate` as written (`2024-09-26`); `None` when absent.
    pub business_day: Option<String>,
    /// `OperatorID`: the cashier. `None` when absent.
    pub operator_id: Option<String>,
    /// When the transaction ended, as written (ISO 8601 date-time, usually with
    /// the store's UTC offset): the last `EndDateTime` of the transaction, else the
    /// body's `EndDateTime` or `DateTime`. `None` when the document has none.
    pub end_date_time: Option<String>,
    /// `CurrencyCode` of the transaction, or else the `CurrencyCode` attribute of
    /// the grand total. `None` when neither is present.
    pub currency: Option<String>,
    /// The transaction body element: `RetailTransaction`, `ControlTransaction`,
    /// `TenderControlTransaction`, … (the first child of `Transaction` whose name
    /// ends in `Transaction`). `None` for a transaction with no body.
    pub transaction_type: Option<String>,
    /// The body's `LineItem`s, in document order.
    pub line_items: Vec<LineItem>,
    /// The body's `Total`s, in document order.
    pub totals: Vec<Total>,
    /// The `TransactionGrandAmount` total, as decimal text.
    pub grand_total: Option<String>,
    /// `Customer/CustomerID` of the body, when the customer identified themselves.
    pub customer_id: Option<String>,
    /// The loyalty account: `LoyaltyAccount/LoyaltyAccountID` or
    /// `LoyaltyAccount/CustomerID` of the body. The agent stores it only as a keyed
    /// hash.
    pub loyalty_account_id: Option<String>,
    /// Vendor elements directly inside `Transaction` or its body (`fu:Hashcode`,
    /// `acs:PerformanceMetrics`), kept whole.
    pub extensions: Vec<ExtensionElement>,
}

impl PosLogTransaction {
    /// The amount of the first total of this `TotalType` (as written, e.g.
    /// `TransactionTaxAmount` or `acs:GrossPositive`).
    pub fn total(&self, total_type: &str) -> Option<&str> {
        self.totals
            .iter()
            .find(|t| t.total_type == total_type)
            .map(|t| t.amount.as_str())
    }
}

/// One `LineItem` of a transaction body.
///
/// The item fields are filled for `Sale` and `Return` lines, the tender fields
/// for `Tender` and `TenderChange` lines; fields a line does not carry are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    /// What the line is: the name of its first child element that is not
    /// `SequenceNumber`, `DateTime`, `BeginDateTime` or `EndDateTime` — `Sale`,
    /// `Return`, `Tender`, `TenderChange`, `Tax`, `LoyaltyReward`, or a vendor
    /// name with its prefix (`acs:CRMCustomVariable`).
    pub kind: String,
    /// The line's `SequenceNumber`.
    pub sequence_number: Option<u64>,
    /// `VoidFlag="true"`: the line was voided.
    pub void: bool,
    /// `CancelFlag="true"`: the line was cancelled.
    pub cancelled: bool,
    /// `DeleteFlag="true"`: the line was deleted.
    pub deleted: bool,
    /// `EntryMethod` attribute (`Scanned`, `Keyed`, `RFID`, …).
    pub entry_method: Option<String>,
    /// `ItemID`: the retailer's item number, often the GTIN itself.
    pub item_id: Option<String>,
    /// `POSIdentity/POSItemID`: the code that was scanned or keyed.
    pub pos_item_id: Option<String>,
    /// The GTIN when the document labels one: `POSIdentity[@POSIDType="GTIN"]/POSItemID`
    /// or `SerialNumber[@Type="GTIN"]`, as written (not check-digit verified here).
    pub gtin: Option<String>,
    /// `Description`, or else the `Name` attribute of `ItemID`.
    pub description: Option<String>,
    /// `Quantity` as decimal text (`"1.0000"`, `"0.42"`, negative for returns).
    pub quantity: Option<String>,
    /// `Quantity` in thousandths (`"0.42"` → 420), exact.
    pub quantity_thousandths: Option<i64>,
    /// `UnitOfMeasureCode` attribute of `Quantity` (`EA`, `KGM`, …).
    pub unit_of_measure: Option<String>,
    /// `RegularSalesUnitPrice` as decimal text.
    pub regular_unit_price: Option<String>,
    /// `ActualSalesUnitPrice` as decimal text.
    pub actual_unit_price: Option<String>,
    /// `ExtendedAmount` as decimal text: the line's amount.
    pub extended_amount: Option<String>,
    /// `TenderType` of a tender line (`Cash`, `CreditDebit`, `DKT:CreditCard`, …).
    pub tender_type: Option<String>,
    /// `Amount` of a tender or tender-change line, as decimal text.
    pub tender_amount: Option<String>,
    /// `Tax/Amount` of each tax of the line (a `Tax` line, or the taxes inside a
    /// `Sale`/`Return`), as decimal text.
    pub tax_amounts: Vec<String>,
    /// Vendor elements of the line: the vendor children of its element, or the
    /// whole element when the line itself is a vendor one.
    pub extensions: Vec<ExtensionElement>,
}

/// One `Total` of a transaction body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Total {
    /// `TotalType` as written (`TransactionGrandAmount`, `acs:GrossPositive`, …).
    pub total_type: String,
    /// The amount as decimal text.
    pub amount: String,
    /// The `CurrencyCode` attribute, when present.
    pub currency: Option<String>,
}

/// A vendor-namespace element kept as it was written, so that nothing a POS sent
/// is silently dropped — except card numbers: a `PrimaryAccountNumber` element or
/// attribute (any prefix) inside it is left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionElement {
    /// The element name with its prefix (`fu:SalesMode`); children from the ARTS
    /// namespace appear by local name.
    pub name: String,
    /// The attributes as written (name with prefix, value with entities resolved).
    pub attributes: Vec<(String, String)>,
    /// The trimmed character data directly inside the element.
    pub text: String,
    /// The child elements.
    pub children: Vec<ExtensionElement>,
}

/// Why a POSLog document was refused. Every variant that concerns a place in the
/// document carries its line; field errors also carry the element path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PosLogError {
    /// The document is larger than [`MAX_POSLOG_BYTES`].
    #[error(
        "the POSLog document is {size} bytes, above the limit of {limit} bytes; \
         have the POS export smaller batches"
    )]
    TooLarge {
        /// The document's size in bytes.
        size: usize,
        /// [`MAX_POSLOG_BYTES`].
        limit: usize,
    },
    /// The document is not well-formed XML.
    #[error("line {line}, column {column}: malformed XML: {message}")]
    Malformed {
        /// 1-based line of the fault.
        line: usize,
        /// 1-based column (in bytes) of the fault.
        column: usize,
        /// What the XML reader found wrong.
        message: String,
    },
    /// A DOCTYPE with an internal subset or entity declarations.
    #[error(
        "line {line}: DOCTYPE with an internal subset or entity declarations refused \
         (protection against entity-expansion bombs); POSLog needs no DTD"
    )]
    DoctypeRefused {
        /// 1-based line of the DOCTYPE.
        line: usize,
    },
    /// A reference to an entity other than the five predefined XML ones.
    #[error(
        "line {line}: {path}: entity &{name}; refused; only &lt; &gt; &amp; &apos; &quot; \
         and character references are allowed"
    )]
    EntityRefused {
        /// 1-based line of the reference.
        line: usize,
        /// Element path where it occurs.
        path: String,
        /// The entity name.
        name: String,
    },
    /// The XML declaration names an encoding other than UTF-8.
    #[error("line {line}: encoding {encoding:?} is not supported; POSLog must be UTF-8")]
    UnsupportedEncoding {
        /// 1-based line of the declaration.
        line: usize,
        /// The declared encoding.
        encoding: String,
    },
    /// Elements nest deeper than the parser accepts.
    #[error("line {line}: {path}: elements nest deeper than {limit} levels")]
    TooDeep {
        /// 1-based line of the element that went too deep.
        line: usize,
        /// Path of the open elements.
        path: String,
        /// The nesting limit.
        limit: usize,
    },
    /// One transaction holds more elements than the parser keeps in memory.
    #[error("line {line}: Transaction: more than {limit} elements in one transaction")]
    TransactionTooLarge {
        /// 1-based line where the transaction starts.
        line: usize,
        /// The element limit.
        limit: usize,
    },
    /// The root element is neither `POSLog` nor `Transaction`.
    #[error("line {line}: the root element is <{found}>, not <POSLog> or <Transaction>")]
    NotPosLog {
        /// 1-based line of the root element.
        line: usize,
        /// The root element's name as written.
        found: String,
    },
    /// A `POSLog` without any `Transaction`.
    #[error("line {line}: POSLog: the document holds no Transaction")]
    NoTransaction {
        /// 1-based line of the root element.
        line: usize,
    },
    /// A required element is missing or empty.
    #[error("line {line}: {path}: {field} is missing")]
    MissingField {
        /// 1-based line of the element that lacks it.
        line: usize,
        /// Path of that element (`Transaction`, `Transaction/RetailTransaction/LineItem`).
        path: String,
        /// The missing element or attribute.
        field: &'static str,
    },
    /// A value does not have the form its element requires.
    #[error("line {line}: {path}: {field} {problem}")]
    InvalidField {
        /// 1-based line of the element holding the value.
        line: usize,
        /// Path of the element that holds the field.
        path: String,
        /// The field (element or attribute name).
        field: String,
        /// What is wrong, with the value.
        problem: String,
    },
    /// [`to_minor_units`] could not convert a decimal text exactly.
    #[error("amount {text:?} {problem}")]
    InvalidAmount {
        /// The text given.
        text: String,
        /// Why it cannot be converted.
        problem: String,
    },
}

#[cfg(test)]
mod tests;
