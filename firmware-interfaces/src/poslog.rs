//! POSLog (being written).
