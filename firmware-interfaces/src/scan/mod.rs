//! Scan decoding (being written).
