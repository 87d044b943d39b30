//! Program file forms (being written).
