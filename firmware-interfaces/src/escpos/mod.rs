//! ESC/POS (being written).
