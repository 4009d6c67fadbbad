//! MSR tracks (being written).
