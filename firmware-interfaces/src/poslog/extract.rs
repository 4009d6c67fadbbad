//! The typed half of the parser: one `Transaction` element tree in, one
//! [`PosLogTransaction`] out.
//!
//! Only what the agent needs is taken; ARTS elements not named here are ignored,
//! vendor elements at the places listed on the types are kept whole.

use super::decimal::{check_decimal, to_minor_units};
use super::xml::{Node, line_of};
use super::{ExtensionElement, LineItem, PosLogError, PosLogTransaction, Total};

/// Children of a `LineItem` that describe the line rather than say what it is.
const LINE_ITEM_FRAMING: [&str; 4] = ["SequenceNumber", "DateTime", "BeginDateTime", "EndDateTime"];

/// The exponent of [`LineItem::quantity_thousandths`].
const QUANTITY_EXPONENT: u8 = 3;

/// Where in the document a node is, for error messages.
struct Place<'a> {
    xml: &'a [u8],
    path: String,
    offset: usize,
}

impl<'a> Place<'a> {
    /// The place of `node`, known by `path`.
    fn of(xml: &'a [u8], path: String, node: &Node) -> Self {
        Place {
            xml,
            path,
            offset: node.offset,
        }
    }

    /// The place of `node`, a child of this element.
    fn child(&self, node: &Node) -> Place<'a> {
        Place::of(self.xml, format!("{}/{}", self.path, node.name), node)
    }

    /// This element lacks the required `field`.
    fn missing(&self, field: &'static str) -> PosLogError {
        PosLogError::MissingField {
            line: line_of(self.xml, self.offset),
            path: self.path.clone(),
            field,
        }
    }

    /// This element's own `field` (an attribute) is wrong.
    fn invalid(&self, field: &str, problem: String) -> PosLogError {
        PosLogError::InvalidField {
            line: line_of(self.xml, self.offset),
            path: self.path.clone(),
            field: field.to_owned(),
            problem,
        }
    }

    /// An error about the value of `child`, an element inside this one: reported
    /// at the child's line, under this element's path, e.g.
    /// `line 12: Transaction/RetailTransaction/LineItem: SequenceNumber is not a number: "x"`.
    fn field_error(&self, child: &Node, problem: String) -> PosLogError {
        PosLogError::InvalidField {
            line: line_of(self.xml, child.offset),
            path: self.path.clone(),
            field: child.name.clone(),
            problem,
        }
    }

    /// The text of `child`, an element inside this one, checked to be a decimal
    /// number.
    fn decimal(&self, child: &Node) -> Result<String, PosLogError> {
        let text = child.text.trim();
        check_decimal(text)
            .map(|()| text.to_owned())
            .map_err(|problem| self.field_error(child, format!("{problem}: {text:?}")))
    }
}

/// Builds the transaction from its `Transaction` element.
pub(crate) fn transaction(xml: &[u8], node: &Node) -> Result<PosLogTransaction, PosLogError> {
    let place = Place::of(xml, node.name.clone(), node);

    let workstation_id = text_of(node, "WorkstationID")
        .ok_or_else(|| place.missing("WorkstationID"))?
        .to_owned();
    let sequence_node = node
        .child("SequenceNumber")
        .ok_or_else(|| place.missing("SequenceNumber"))?;
    let sequence_number = sequence_node.text.trim();
    if sequence_number.is_empty() {
        return Err(place.missing("SequenceNumber"));
    }
    if !sequence_number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(place.field_error(sequence_node, format!("is not a number: {sequence_number:?}")));
    }

    let body = node
        .children
        .iter()
        .find(|c| c.local.ends_with("Transaction") && c.local != "Transaction");

    let mut line_items = Vec::new();
    let mut totals = Vec::new();
    let mut extensions: Vec<ExtensionElement> = vendor_children(node).collect();
    let mut customer_id = None;
    let mut loyalty_account_id = None;
    if let Some(body) = body {
        let body_place = place.child(body);
        for line in body.children_named("LineItem") {
            line_items.push(line_item(&body_place.child(line), line)?);
        }
        for total in body.children_named("Total") {
            totals.push(total_of(&body_place, total)?);
        }
        customer_id = body
            .child("Customer")
            .and_then(|c| text_of(c, "CustomerID"))
            .map(str::to_owned);
        loyalty_account_id = body
            .child("LoyaltyAccount")
            .and_then(|a| text_of(a, "LoyaltyAccountID").or_else(|| text_of(a, "CustomerID")))
            .map(str::to_owned);
        extensions.extend(vendor_children(body));
    }
    let grand = totals.iter().find(|t| t.total_type == "TransactionGrandAmount");
    let currency = text_of(node, "CurrencyCode")
        .or_else(|| body.and_then(|b| text_of(b, "CurrencyCode")))
        .map(str::to_owned)
        .or_else(|| grand.and_then(|t| t.currency.clone()));
    let grand_total = grand.map(|t| t.amount.clone());

    Ok(PosLogTransaction {
        store_id: store_id(node),
        workstation_id,
        sequence_number: sequence_number.to_owned(),
        business_day: node.child("BusinessDayDate").and_then(|d| {
            // Some exports wrap the date: `<BusinessDayDate><Date>…</Date></BusinessDayDate>`.
            d.trimmed_text().or_else(|| text_of(d, "Date")).map(str::to_owned)
        }),
        operator_id: text_of(node, "OperatorID").map(str::to_owned),
        // The last EndDateTime of the transaction (some POSs write one per phase):
        // when the transaction closed, as the POS wrote it (local time and offset).
        end_date_time: node
            .children_named("EndDateTime")
            .filter_map(Node::trimmed_text)
            .max()
            .or_else(|| body.and_then(|b| text_of(b, "EndDateTime")))
            .or_else(|| body.and_then(|b| text_of(b, "DateTime")))
            .map(str::to_owned),
        currency,
        transaction_type: body.map(|b| b.name.clone()),
        line_items,
        totals,
        grand_total,
        customer_id,
        loyalty_account_id,
        extensions,
    })
}

/// The store: the `RetailStore` business unit, else the first business unit,
/// else NCR's `RetailStoreID`.
fn store_id(transaction: &Node) -> Option<String> {
    let units: Vec<&Node> = transaction
        .children_named("BusinessUnit")
        .filter_map(|unit| unit.child("UnitID"))
        .collect();
    units
        .iter()
        .find(|u| u.attribute("TypeCode") == Some("RetailStore"))
        .or_else(|| units.first())
        .and_then(|u| u.trimmed_text())
        .or_else(|| text_of(transaction, "RetailStoreID"))
        .map(str::to_owned)
}

/// The trimmed text of the first ARTS child `local`, when not empty.
fn text_of<'a>(node: &'a Node, local: &str) -> Option<&'a str> {
    node.child(local).and_then(Node::trimmed_text)
}

/// The vendor children of `node`, converted whole (card data left out).
fn vendor_children(node: &Node) -> impl Iterator<Item = ExtensionElement> + '_ {
    node.children.iter().filter(|c| !c.arts).filter_map(extension)
}

/// The local name of the elements and attributes that hold a card number, in ARTS
/// and in vendor namespaces alike.
const CARD_NUMBER: &str = "PrimaryAccountNumber";

/// Whether `name` (an element's local name, or an attribute's name as written with
/// its prefix) is a card number's.
fn is_card_number(name: &str) -> bool {
    name.rsplit(':').next() == Some(CARD_NUMBER)
}

/// `node` and its subtree as an [`ExtensionElement`], without card data: an element
/// or attribute named `PrimaryAccountNumber` (whatever its prefix, masked or not)
/// is left out with everything inside it. `None` when `node` itself is one.
fn extension(node: &Node) -> Option<ExtensionElement> {
    if is_card_number(&node.local) {
        return None;
    }
    Some(ExtensionElement {
        name: node.name.clone(),
        attributes: node
            .attributes
            .iter()
            .filter(|(name, _)| !is_card_number(name))
            .cloned()
            .collect(),
        text: node.text.trim().to_owned(),
        children: node.children.iter().filter_map(extension).collect(),
    })
}

/// An ARTS boolean attribute (`true`/`false`/`1`/`0`), absent meaning false.
fn flag(place: &Place<'_>, line: &Node, name: &str) -> Result<bool, PosLogError> {
    match line.attribute(name).map(str::trim) {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(place.invalid(
            &format!("@{name}"),
            format!("is not a boolean (true/false): {other:?}"),
        )),
    }
}

/// Builds a line item from its `LineItem` element at `place`.
fn line_item(place: &Place<'_>, line: &Node) -> Result<LineItem, PosLogError> {
    let sequence_number = match line.child("SequenceNumber") {
        None => None,
        Some(seq) => {
            let text = seq.text.trim();
            let number = text
                .parse::<u64>()
                .ok()
                .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| place.field_error(seq, format!("is not a number: {text:?}")))?;
            Some(number)
        }
    };
    let element = line
        .children
        .iter()
        .find(|c| !(c.arts && LINE_ITEM_FRAMING.contains(&c.local.as_str())))
        .ok_or_else(|| place.missing("line item element (Sale, Tender, …)"))?;
    let element_place = place.child(element);

    let mut item = LineItem {
        kind: element.name.clone(),
        sequence_number,
        void: flag(place, line, "VoidFlag")?,
        cancelled: flag(place, line, "CancelFlag")?,
        deleted: flag(place, line, "DeleteFlag")?,
        entry_method: line.attribute("EntryMethod").map(str::to_owned),
        item_id: None,
        pos_item_id: None,
        gtin: None,
        description: None,
        quantity: None,
        quantity_thousandths: None,
        unit_of_measure: None,
        regular_unit_price: None,
        actual_unit_price: None,
        extended_amount: None,
        tender_type: None,
        tender_amount: None,
        tax_amounts: Vec::new(),
        extensions: Vec::new(),
    };

    if !element.arts {
        item.extensions.extend(extension(element));
        return Ok(item);
    }
    item.extensions.extend(vendor_children(element));
    match element.local.as_str() {
        "Sale" | "Return" => item_fields(&element_place, element, &mut item)?,
        "Tender" | "TenderChange" => {
            // A change line nests the tender: `<TenderChange><TenderChange TenderType="Cash"><Amount>`.
            item.tender_type = element
                .find(&|n| n.arts && n.attribute("TenderType").is_some())
                .and_then(|n| n.attribute("TenderType"))
                .map(str::to_owned);
            if let Some(amount) = first_inside(element, "Amount") {
                item.tender_amount = Some(element_place.decimal(amount)?);
            }
        }
        "Tax" => {
            if let Some(amount) = element.child("Amount") {
                item.tax_amounts.push(element_place.decimal(amount)?);
            }
        }
        _ => {}
    }
    Ok(item)
}

/// The first ARTS element `local` inside `node`: a direct child if there is one,
/// else the first found depth first.
fn first_inside<'a>(node: &'a Node, local: &str) -> Option<&'a Node> {
    node.child(local).or_else(|| {
        node.children
            .iter()
            .filter(|c| c.arts)
            .find_map(|c| first_inside(c, local))
    })
}

/// The item fields of a `Sale` or `Return` element.
fn item_fields(place: &Place<'_>, element: &Node, item: &mut LineItem) -> Result<(), PosLogError> {
    let item_id = element.child("ItemID");
    item.item_id = item_id.and_then(Node::trimmed_text).map(str::to_owned);
    let pos_identity = element.child("POSIdentity");
    item.pos_item_id = pos_identity
        .and_then(|p| text_of(p, "POSItemID"))
        .map(str::to_owned);
    item.gtin = pos_identity
        .filter(|p| p.attribute("POSIDType") == Some("GTIN"))
        .and_then(|p| text_of(p, "POSItemID"))
        .or_else(|| {
            element
                .children_named("SerialNumber")
                .find(|s| s.attribute("Type") == Some("GTIN"))
                .and_then(Node::trimmed_text)
        })
        .map(str::to_owned);
    item.description = text_of(element, "Description")
        .or_else(|| item_id.and_then(|i| i.attribute("Name")))
        .map(str::to_owned);
    if let Some(quantity) = element.child("Quantity") {
        let text = place.decimal(quantity)?;
        let thousandths = to_minor_units(&text, QUANTITY_EXPONENT).map_err(|e| match e {
            PosLogError::InvalidAmount { text, problem } => {
                place.field_error(quantity, format!("{problem}: {text:?}"))
            }
            other => other,
        })?;
        item.quantity = Some(text);
        item.quantity_thousandths = Some(thousandths);
        item.unit_of_measure = quantity.attribute("UnitOfMeasureCode").map(str::to_owned);
    }
    let amount = |local: &str| -> Result<Option<String>, PosLogError> {
        element.child(local).map(|n| place.decimal(n)).transpose()
    };
    item.regular_unit_price = amount("RegularSalesUnitPrice")?;
    item.actual_unit_price = amount("ActualSalesUnitPrice")?;
    item.extended_amount = amount("ExtendedAmount")?;
    for tax in element.children_named("Tax") {
        if let Some(amount) = tax.child("Amount") {
            item.tax_amounts.push(place.child(tax).decimal(amount)?);
        }
    }
    Ok(())
}

/// Builds a total from its `Total` element, a child of the body at `body_place`.
fn total_of(body_place: &Place<'_>, total: &Node) -> Result<Total, PosLogError> {
    let place = body_place.child(total);
    let total_type = total
        .attribute("TotalType")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| place.missing("@TotalType"))?;
    Ok(Total {
        total_type: total_type.to_owned(),
        amount: body_place.decimal(total)?,
        currency: total.attribute("CurrencyCode").map(str::to_owned),
    })
}
