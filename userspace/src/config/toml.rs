//! The spanned-tree reader: walks toml's [`DeTable`] by hand so that every
//! value, missing field and unknown field is reported with its field path,
//! its line and the value as written.

use std::ops::{Range, RangeInclusive};
use std::path::Path;

use ::toml::de::{DeTable, DeValue};
use serde_spanned::Spanned;

use super::types::{Error, Location};

/// Lines and columns are `u32` (keeps [`Error`] small); saturates.
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The file being read: turns spans into lines and source excerpts.
pub(super) struct Doc<'a> {
    pub(super) path: &'a Path,
    pub(super) src: &'a str,
    /// The offset of every `\n`, in order: a line is a binary search, not a
    /// count from the start (a file of 100 000 outputs asks 100 000 times).
    newlines: Vec<usize>,
}

impl<'a> Doc<'a> {
    pub(super) fn new(path: &'a Path, src: &'a str) -> Self {
        let newlines = src
            .bytes()
            .enumerate()
            .filter_map(|(i, b)| (b == b'\n').then_some(i))
            .collect();
        Doc {
            path,
            src,
            newlines,
        }
    }

    /// The 1-based line of the span's start.
    pub(super) fn line(&self, span: &Range<usize>) -> u32 {
        let start = span.start.min(self.src.len());
        // The newlines before `start`.
        count(self.newlines.partition_point(|&n| n < start) + 1)
    }

    pub(super) fn at(&self, span: &Range<usize>) -> Location {
        Location {
            path: self.path.to_path_buf(),
            line: Some(self.line(span)),
            column: None,
        }
    }

    /// The value as written, on one line and at most 60 characters.
    pub(super) fn excerpt(&self, span: &Range<usize>) -> String {
        let text = self.src.get(span.clone()).unwrap_or("").trim();
        let one_line: String = text
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        if one_line.chars().count() > 60 {
            let cut: String = one_line.chars().take(57).collect();
            format!("{cut}...")
        } else {
            one_line
        }
    }

    pub(super) fn syntax(&self, e: &::toml::de::Error) -> Error {
        let (line, column) = match e.span() {
            Some(span) => {
                let start = span.start.min(self.src.len());
                let before = self.src.get(..start).unwrap_or(self.src);
                let line = before.matches('\n').count() + 1;
                let column = before
                    .rsplit_once('\n')
                    .map_or(before, |(_, last)| last)
                    .chars()
                    .count()
                    + 1;
                (Some(count(line)), Some(count(column)))
            }
            None => (None, None),
        };
        Error::Syntax {
            at: Location {
                path: self.path.to_path_buf(),
                line,
                column,
            },
            message: {
                let mut message = e.message().trim().replace('\n', "; ");
                if message == "duplicate key"
                    && let Some(span) = e.span()
                {
                    message = format!("{message} `{}`", self.excerpt(&span));
                }
                message
            },
        }
    }

    pub(super) fn invalid_at(
        &self,
        line: u32,
        field: String,
        value: String,
        reason: String,
    ) -> Error {
        Error::InvalidValue {
            at: Location {
                path: self.path.to_path_buf(),
                line: Some(line),
                column: None,
            },
            field,
            value,
            reason,
        }
    }
}

/// A string value and where it is.
pub(super) struct Str<'a> {
    pub(super) value: &'a str,
    pub(super) span: Range<usize>,
}

/// An integer value (already range-checked) and where it is.
pub(super) struct Int {
    pub(super) value: i64,
    pub(super) span: Range<usize>,
}

/// A table being read, with its field path. Unknown keys are rejected when it
/// is opened.
pub(super) struct Table<'d, 'i> {
    pub(super) doc: &'d Doc<'d>,
    /// `""` for the root, `engine`, `flow[0]`, `flow[0].output[1]`.
    pub(super) path: String,
    pub(super) span: Range<usize>,
    table: &'d DeTable<'i>,
}

impl<'d, 'i> Table<'d, 'i> {
    pub(super) fn new(
        doc: &'d Doc<'d>,
        path: String,
        value: &'d Spanned<DeValue<'i>>,
        allowed: &[&str],
    ) -> Result<Self, Error> {
        let DeValue::Table(table) = value.get_ref() else {
            return Err(Error::InvalidValue {
                at: doc.at(&value.span()),
                value: doc.excerpt(&value.span()),
                field: path,
                reason: format!("expected a table, found {}", value.get_ref().type_str()),
            });
        };
        let this = Table {
            doc,
            path,
            span: value.span(),
            table,
        };
        // Report the first unknown key in file order.
        let unknown = table
            .iter()
            .filter(|(k, _)| !allowed.contains(&k.get_ref().as_ref()))
            .min_by_key(|(k, _)| k.span().start);
        if let Some((key, _)) = unknown {
            return Err(Error::InvalidField {
                at: doc.at(&key.span()),
                field: this.field(key.get_ref()),
                reason: format!("unknown field (expected one of: {})", allowed.join(", ")),
            });
        }
        Ok(this)
    }

    pub(super) fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(super) fn line(&self) -> u32 {
        self.doc.line(&self.span)
    }

    pub(super) fn get(&self, key: &str) -> Option<&'d Spanned<DeValue<'i>>> {
        self.table.get(key)
    }

    pub(super) fn invalid(
        &self,
        key: &str,
        span: &Range<usize>,
        reason: impl Into<String>,
    ) -> Error {
        Error::InvalidValue {
            at: self.doc.at(span),
            field: self.field(key),
            value: self.doc.excerpt(span),
            reason: reason.into(),
        }
    }

    /// An error about a field of this table, located at the table's header.
    pub(super) fn field_error(&self, key: &str, reason: impl Into<String>) -> Error {
        Error::InvalidField {
            at: self.location(),
            field: self.field(key),
            reason: reason.into(),
        }
    }

    /// An error about this table as a whole.
    pub(super) fn whole(&self, reason: impl Into<String>) -> Error {
        Error::InvalidField {
            at: self.location(),
            field: self.path.clone(),
            reason: reason.into(),
        }
    }

    pub(super) fn location(&self) -> Location {
        let mut at = self.doc.at(&self.span);
        if self.span.is_empty() && self.path.is_empty() {
            // The root table: the file as a whole.
            at.line = None;
        }
        at
    }

    pub(super) fn required<T>(&self, key: &str, value: Option<T>) -> Result<T, Error> {
        value.ok_or_else(|| self.field_error(key, "missing (required)"))
    }

    pub(super) fn string(&self, key: &str) -> Result<Option<Str<'d>>, Error> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        match value.get_ref() {
            DeValue::String(s) => Ok(Some(Str {
                value: s.as_ref(),
                span: value.span(),
            })),
            other => Err(self.invalid(
                key,
                &value.span(),
                format!("expected a string, found {}", other.type_str()),
            )),
        }
    }

    pub(super) fn integer(
        &self,
        key: &str,
        range: RangeInclusive<i64>,
    ) -> Result<Option<Int>, Error> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let bounds = format!("{}..={}", range.start(), range.end());
        let DeValue::Integer(int) = value.get_ref() else {
            return Err(self.invalid(
                key,
                &value.span(),
                format!(
                    "expected an integer ({bounds}), found {}",
                    value.get_ref().type_str()
                ),
            ));
        };
        match i64::from_str_radix(int.as_str(), int.radix()) {
            Ok(n) if range.contains(&n) => Ok(Some(Int {
                value: n,
                span: value.span(),
            })),
            _ => Err(self.invalid(key, &value.span(), format!("out of range ({bounds})"))),
        }
    }

    /// A number, integer or float, within `min..=max` (`min` excluded when
    /// `above_min`: a rate must be more than zero).
    pub(super) fn number(
        &self,
        key: &str,
        min: f64,
        max: f64,
        above_min: bool,
    ) -> Result<Option<f64>, Error> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let bounds = if above_min {
            format!("more than {min}, at most {max}")
        } else {
            format!("{min}..={max}")
        };
        let parsed = match value.get_ref() {
            DeValue::Integer(int) => i64::from_str_radix(int.as_str(), int.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(float) => float.as_str().replace('_', "").parse::<f64>().ok(),
            other => {
                return Err(self.invalid(
                    key,
                    &value.span(),
                    format!("expected a number ({bounds}), found {}", other.type_str()),
                ));
            }
        };
        match parsed {
            Some(n) if n.is_finite() && n <= max && (n > min || (!above_min && n == min)) => {
                Ok(Some(n))
            }
            _ => Err(self.invalid(key, &value.span(), format!("out of range ({bounds})"))),
        }
    }

    /// `[[key]]` tables: present, an array, not empty, every element a table.
    pub(super) fn array_of_tables(
        &self,
        key: &str,
        header: &str,
    ) -> Result<&'d [Spanned<DeValue<'i>>], Error> {
        let Some(value) = self.get(key) else {
            return Err(self.field_error(
                key,
                format!("missing: at least one {header} table is required"),
            ));
        };
        let DeValue::Array(items) = value.get_ref() else {
            return Err(self.invalid(
                key,
                &value.span(),
                format!(
                    "expected {header} tables, found {}",
                    value.get_ref().type_str()
                ),
            ));
        };
        if items.is_empty() {
            return Err(self.invalid(
                key,
                &value.span(),
                format!("at least one {header} table is required"),
            ));
        }
        Ok(items.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines from the newline index agree with counting them, at every
    /// offset, past the end included.
    #[test]
    fn lines_are_counted_newlines_plus_one() {
        let src = "a\nbb\n\nccc\n";
        let doc = Doc::new(Path::new("x.toml"), src);
        for start in 0..=src.len() + 3 {
            let want = src.as_bytes()[..start.min(src.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            assert_eq!(doc.line(&(start..start)), count(want), "offset {start}");
        }
        assert_eq!(Doc::new(Path::new("e"), "").line(&(0..0)), 1);
    }
}
