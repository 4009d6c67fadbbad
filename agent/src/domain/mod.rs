//! Pure domain rules: money, the BOPIS order state machine, the return policy and
//! convergent wishlist edits. Nothing here touches SQLite, the network or the clock:
//! callers pass the current time in.

pub mod bopis;
pub mod money;
pub mod returns;
pub mod wishlist;
