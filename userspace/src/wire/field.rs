//! Byte ranges of header fields, for the typed views.

pub type Field = core::ops::Range<usize>;
pub type Rest = core::ops::RangeFrom<usize>;
