//! The streaming half of the parser: quick-xml events in, one small element tree
//! per `Transaction` out.
//!
//! The document is read with quick-xml's streaming [`Reader`]; only the
//! `Transaction` being read is held as a tree, and it is handed to the caller as
//! soon as its end tag is read, so memory follows the largest transaction, not
//! the document.
//!
//! Namespaces are resolved here rather than by quick-xml's `NsReader`, because
//! the parser needs only one bit per element (ARTS or vendor) and because
//! `NsReader` resolves a prefix by a linear search of all bindings in scope, which
//! a hostile document with thousands of declarations turns quadratic.
//!
//! **Safety invariants** (the input is untrusted):
//! * no entity is ever expanded except the five predefined XML ones and character
//!   references; any other `&name;` is an error, never a lookup;
//! * a `DOCTYPE` with an internal subset (`[...]`, where entities are declared) is
//!   refused before anything else is read: no billion-laughs expansion can start;
//! * a transaction holds at most [`MAX_TRANSACTION_ELEMENTS`] elements, so memory
//!   stays bounded whatever the document;
//! * elements nest at most [`MAX_DEPTH`] deep and carry at most
//!   [`MAX_ATTRIBUTES`] attributes (the duplicate-attribute check is quadratic in
//!   their number); all work is linear in the input's size;
//! * only UTF-8 (or its ASCII subset) is read; another declared encoding is refused
//!   rather than misread.

use std::collections::HashMap;

use quick_xml::Reader;
use quick_xml::escape::{EscapeError, resolve_predefined_entity};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::PrefixDeclaration;

use super::PosLogError;

/// The deepest element nesting accepted. ARTS POSLog documents nest about ten
/// levels; the margin leaves room for vendor extensions while keeping a hostile
/// document from growing the element stack without bound.
pub(crate) const MAX_DEPTH: usize = 64;

/// The most attributes one element may carry. ARTS elements have a handful;
/// NCR's busiest carry a dozen.
pub(crate) const MAX_ATTRIBUTES: usize = 256;

/// The most elements one `Transaction` may hold. Each is kept in memory until the
/// transaction ends; a busy real transaction (hundreds of lines of some twenty
/// elements each) stays far below, while a hostile one cannot make a 16 MiB
/// document of `<a/>`s cost gigabytes.
pub(crate) const MAX_TRANSACTION_ELEMENTS: usize = 100_000;

/// One element of a transaction, with what the extraction needs of it.
#[derive(Debug)]
pub(crate) struct Node {
    /// The name as reported: the local name for ARTS elements, the name as
    /// written (`acs:CRMCustomVariable`) for elements of other namespaces.
    pub(crate) name: String,
    /// The local name, without any prefix.
    pub(crate) local: String,
    /// Whether the element belongs to ARTS (see [`PrefixScopes`]).
    pub(crate) arts: bool,
    /// Attributes as written (name with prefix, unescaped value); namespace
    /// declarations are left out.
    pub(crate) attributes: Vec<(String, String)>,
    /// The character data directly inside the element, entities resolved.
    pub(crate) text: String,
    /// The child elements, in document order.
    pub(crate) children: Vec<Node>,
    /// Byte offset of the start tag's `<`, for error messages.
    pub(crate) offset: usize,
}

impl Node {
    /// The first ARTS child element with this local name.
    pub(crate) fn child(&self, local: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.arts && c.local == local)
    }

    /// The ARTS child elements with this local name.
    pub(crate) fn children_named<'a>(&'a self, local: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.arts && c.local == local)
    }

    /// The value of the unprefixed attribute `name`.
    pub(crate) fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The trimmed text, or `None` when it is empty.
    pub(crate) fn trimmed_text(&self) -> Option<&str> {
        Some(self.text.trim()).filter(|t| !t.is_empty())
    }

    /// The first element, depth first in document order, among this element
    /// and its descendants for which `wanted` holds.
    pub(crate) fn find(&self, wanted: &impl Fn(&Node) -> bool) -> Option<&Node> {
        if wanted(self) {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(wanted))
    }
}

/// The 1-based line and column of byte `offset` in `xml`.
pub(crate) fn line_and_column(xml: &[u8], offset: usize) -> (usize, usize) {
    let before = &xml[..offset.min(xml.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    (line, offset.min(xml.len()) - line_start + 1)
}

/// The 1-based line of byte `offset` in `xml`.
pub(crate) fn line_of(xml: &[u8], offset: usize) -> usize {
    line_and_column(xml, offset).0
}

/// What the root element turned out to be.
enum Root {
    /// Not read yet.
    Pending,
    /// `POSLog`: its `Transaction` children are the transactions.
    PosLog,
    /// A lone `Transaction` as the root.
    Transaction,
    /// The root element has been closed; only comments and whitespace may follow.
    Closed,
}

/// The namespace prefixes in scope, each reduced to the one thing the parser
/// needs: whether it is bound to ARTS.
///
/// An element is ARTS when its prefix is bound to ARTS. The empty prefix stands
/// for the default namespace. Bound to ARTS are: no namespace at all, any
/// namespace whose name contains `nrf-arts` (all POSLog versions), and the
/// root element's own default namespace, whatever it is (a POS that invents its
/// own namespace URI still writes ARTS elements). Every other namespace is a
/// vendor's; an undeclared prefix is a vendor's too, not an error.
#[derive(Default)]
struct PrefixScopes {
    /// Prefix → whether it is bound to ARTS, innermost declaration last.
    bindings: HashMap<Vec<u8>, Vec<bool>>,
    /// For each open element, the prefixes it declared, to undo at its end.
    declared: Vec<Vec<Vec<u8>>>,
    /// The root element's default namespace, once known.
    document_namespace: Option<Vec<u8>>,
}

impl PrefixScopes {
    /// Opens an element's scope with its `xmlns` / `xmlns:p` declarations.
    fn push(&mut self, declarations: Vec<(Vec<u8>, Vec<u8>)>) {
        if self.declared.is_empty() {
            let default = declarations
                .iter()
                .find(|(prefix, _)| prefix.is_empty())
                .map(|(_, namespace)| namespace.clone());
            self.document_namespace = Some(default.unwrap_or_default());
        }
        let mut prefixes = Vec::with_capacity(declarations.len());
        for (prefix, namespace) in declarations {
            let arts = namespace.is_empty()
                || contains_nrf_arts(&namespace)
                || self.document_namespace.as_deref() == Some(namespace.as_slice());
            self.bindings.entry(prefix.clone()).or_default().push(arts);
            prefixes.push(prefix);
        }
        self.declared.push(prefixes);
    }

    /// Closes the innermost element's scope.
    fn pop(&mut self) {
        for prefix in self.declared.pop().unwrap_or_default() {
            if let Some(stack) = self.bindings.get_mut(&prefix) {
                stack.pop();
            }
        }
    }

    /// Whether an element with this prefix (empty: none) is ARTS.
    fn is_arts(&self, prefix: &[u8]) -> bool {
        match self.bindings.get(prefix).and_then(|stack| stack.last()) {
            Some(&arts) => arts,
            // No default namespace declared: elements are in no namespace.
            None => prefix.is_empty(),
        }
    }
}

/// An element's attributes, split into namespace declarations and the rest.
struct Attributes {
    /// `(name as written, unescaped value)`, declarations left out.
    plain: Vec<(String, String)>,
    /// `(prefix, namespace)`; the empty prefix for `xmlns="…"`.
    declarations: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Reads `xml` and calls `on_transaction` with each complete `Transaction`
/// element (the root `POSLog`'s children, or the root itself when the document
/// is a lone `Transaction`). Returns how many transactions were read.
pub(crate) fn read_transactions(
    xml: &[u8],
    mut on_transaction: impl FnMut(Node) -> Result<(), PosLogError>,
) -> Result<usize, PosLogError> {
    let mut reader = Reader::from_reader(xml);
    {
        let config = reader.config_mut();
        // `<a/>` becomes Start + End, so there is one code path for elements.
        config.expand_empty_elements = true;
        config.check_end_names = true;
        config.trim_text(false);
    }
    let malformed = |offset: usize, message: String| {
        let (line, column) = line_and_column(xml, offset);
        PosLogError::Malformed {
            line,
            column,
            message,
        }
    };

    let mut root = Root::Pending;
    let mut root_offset = 0;
    let mut scopes = PrefixScopes::default();
    // Names of all open elements, for error paths and the depth limit.
    let mut open: Vec<String> = Vec::new();
    // The transaction being built: its open elements, outermost first.
    let mut building: Vec<Node> = Vec::new();
    // Elements of the transaction being built, for MAX_TRANSACTION_ELEMENTS.
    let mut transaction_elements = 0;
    let mut count = 0;

    loop {
        let offset = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(error) => {
                let at = usize::try_from(reader.error_position()).unwrap_or(offset);
                return Err(malformed(at, error.to_string()));
            }
        };
        match event {
            Event::Decl(decl) => {
                if let Some(Ok(encoding)) = decl.encoding() {
                    let encoding = String::from_utf8_lossy(&encoding).into_owned();
                    if !matches!(
                        encoding.to_ascii_lowercase().as_str(),
                        "utf-8" | "utf8" | "us-ascii" | "ascii"
                    ) {
                        return Err(PosLogError::UnsupportedEncoding {
                            line: line_of(xml, offset),
                            encoding,
                        });
                    }
                }
            }
            Event::DocType(doctype) => {
                let content = doctype.into_inner();
                let has_subset = content.contains(&b'[');
                let declares_entity = content.windows(8).any(|w| w.eq_ignore_ascii_case(b"<!ENTITY"));
                if has_subset || declares_entity {
                    return Err(PosLogError::DoctypeRefused {
                        line: line_of(xml, offset),
                    });
                }
                // An external-identifier-only DOCTYPE is ignored: nothing is
                // ever fetched, and POSLog is defined by XML Schema, not a DTD.
            }
            Event::Start(start) => {
                let qname = start.name();
                let name = utf8(qname.as_ref())
                    .ok_or_else(|| malformed(offset, "element name is not UTF-8".into()))?
                    .to_owned();
                let local = utf8(start.local_name().as_ref()).unwrap_or_default().to_owned();
                if open.len() >= MAX_DEPTH {
                    return Err(PosLogError::TooDeep {
                        line: line_of(xml, offset),
                        path: open.join("/"),
                        limit: MAX_DEPTH,
                    });
                }
                let path = || {
                    let mut path = open.join("/");
                    if !path.is_empty() {
                        path.push('/');
                    }
                    path.push_str(&name);
                    path
                };
                let attributes = read_attributes(xml, &start, offset, path)?;
                scopes.push(attributes.declarations);
                let prefix = qname.prefix().map_or(&[][..], |p| p.into_inner());
                let arts = scopes.is_arts(prefix);
                let display = if arts { local.clone() } else { name.clone() };
                match root {
                    Root::Pending => {
                        root_offset = offset;
                        root = match (arts, local.as_str()) {
                            (true, "POSLog") => Root::PosLog,
                            (true, "Transaction") => Root::Transaction,
                            _ => {
                                return Err(PosLogError::NotPosLog {
                                    line: line_of(xml, offset),
                                    found: name,
                                });
                            }
                        };
                    }
                    Root::Closed => {
                        return Err(malformed(
                            offset,
                            format!("second root element <{name}> after the document's root"),
                        ));
                    }
                    Root::PosLog | Root::Transaction => {}
                }
                let is_transaction_element = arts
                    && local == "Transaction"
                    && match root {
                        Root::Transaction => open.is_empty(),
                        Root::PosLog => open.len() == 1,
                        Root::Pending | Root::Closed => false,
                    };
                if !building.is_empty() || is_transaction_element {
                    if building.is_empty() {
                        transaction_elements = 0;
                    }
                    transaction_elements += 1;
                    if transaction_elements > MAX_TRANSACTION_ELEMENTS {
                        return Err(PosLogError::TransactionTooLarge {
                            line: line_of(xml, building.first().map_or(offset, |t| t.offset)),
                            limit: MAX_TRANSACTION_ELEMENTS,
                        });
                    }
                    building.push(Node {
                        name: display.clone(),
                        local,
                        arts,
                        attributes: attributes.plain,
                        text: String::new(),
                        children: Vec::new(),
                        offset,
                    });
                }
                open.push(display);
            }
            Event::End(_) => {
                open.pop();
                scopes.pop();
                if let Some(node) = building.pop() {
                    match building.last_mut() {
                        Some(parent) => parent.children.push(node),
                        None => {
                            count += 1;
                            on_transaction(node)?;
                        }
                    }
                }
                if open.is_empty() {
                    root = Root::Closed;
                }
            }
            Event::Text(text) => {
                let text = text
                    .xml10_content()
                    .map_err(|e| malformed(offset, e.to_string()))?;
                push_text(&mut building, &open, &text, || {
                    malformed(offset, format!("text {:?} outside the root element", text.trim()))
                })?;
            }
            Event::CData(cdata) => {
                let text = cdata
                    .xml10_content()
                    .map_err(|e| malformed(offset, e.to_string()))?;
                push_text(&mut building, &open, &text, || {
                    malformed(offset, "CDATA outside the root element".into())
                })?;
            }
            Event::GeneralRef(reference) => {
                let name = reference
                    .decode()
                    .map_err(|e| malformed(offset, e.to_string()))?
                    .into_owned();
                let resolved: String = if reference.is_char_ref() {
                    match reference.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        Ok(None) | Err(_) => {
                            return Err(malformed(offset, format!("invalid character reference &{name};")));
                        }
                    }
                } else if let Some(text) = resolve_predefined_entity(&name) {
                    text.to_owned()
                } else {
                    return Err(PosLogError::EntityRefused {
                        line: line_of(xml, offset),
                        path: open.join("/"),
                        name,
                    });
                };
                push_text(&mut building, &open, &resolved, || {
                    malformed(offset, "entity reference outside the root element".into())
                })?;
            }
            // Never produced with `expand_empty_elements`; listed so the match
            // stays exhaustive.
            Event::Empty(_) => {
                return Err(malformed(offset, "unexpected empty-element event".into()));
            }
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => {
                if let Some(name) = open.last() {
                    return Err(malformed(
                        xml.len(),
                        format!("the document ends inside <{name}> (path {})", open.join("/")),
                    ));
                }
                return match root {
                    Root::Pending => Err(malformed(xml.len(), "no root element".into())),
                    _ if count == 0 => Err(PosLogError::NoTransaction {
                        line: line_of(xml, root_offset),
                    }),
                    _ => Ok(count),
                };
            }
        }
    }
}

/// Appends character data to the element being built; outside the root only
/// whitespace is allowed, and text elsewhere outside a transaction is ignored.
fn push_text(
    building: &mut [Node],
    open: &[String],
    text: &str,
    outside_root: impl FnOnce() -> PosLogError,
) -> Result<(), PosLogError> {
    if let Some(node) = building.last_mut() {
        node.text.push_str(text);
    } else if open.is_empty() && !text.trim().is_empty() {
        return Err(outside_root());
    }
    Ok(())
}

/// Whether a namespace name is one of the ARTS/NRF ones (`http://www.nrf-arts.org/…`
/// in its several spellings).
fn contains_nrf_arts(namespace: &[u8]) -> bool {
    namespace.windows(8).any(|w| w.eq_ignore_ascii_case(b"nrf-arts"))
}

/// `bytes` as text, when they are UTF-8.
fn utf8(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

/// The attributes of `start` (at byte `offset`, element path from `path`), with
/// entities resolved and namespace declarations set apart.
fn read_attributes(
    xml: &[u8],
    start: &BytesStart<'_>,
    offset: usize,
    path: impl Fn() -> String,
) -> Result<Attributes, PosLogError> {
    let malformed = |message: String| {
        let (line, column) = line_and_column(xml, offset);
        PosLogError::Malformed {
            line,
            column,
            message,
        }
    };
    let mut attributes = Attributes {
        plain: Vec::new(),
        declarations: Vec::new(),
    };
    for (index, attribute) in start.attributes().enumerate() {
        if index == MAX_ATTRIBUTES {
            return Err(malformed(format!(
                "{}: more than {MAX_ATTRIBUTES} attributes",
                path()
            )));
        }
        let attribute = attribute.map_err(|e| malformed(format!("{}: {e}", path())))?;
        let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
        let value = attribute.unescape_value().map_err(|e| match e {
            quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, entity)) => {
                PosLogError::EntityRefused {
                    line: line_of(xml, offset),
                    path: format!("{}/@{key}", path()),
                    name: entity,
                }
            }
            other => malformed(format!("{}/@{key}: {other}", path())),
        })?;
        match attribute.key.as_namespace_binding() {
            Some(PrefixDeclaration::Default) => attributes
                .declarations
                .push((Vec::new(), value.as_bytes().to_vec())),
            Some(PrefixDeclaration::Named(prefix)) => attributes
                .declarations
                .push((prefix.to_vec(), value.as_bytes().to_vec())),
            None => attributes.plain.push((key, value.into_owned())),
        }
    }
    Ok(attributes)
}
