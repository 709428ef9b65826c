//! The one way validation records a broken rule. [`Errors`] collects
//! `FieldError { path, reason }` in the order rules are checked, and holds
//! the rules that more than one section shares: number ranges and names.
//! Both the table compiler and the rate-limit compiler write through it.

use std::fmt::Display;
use std::ops::RangeInclusive;

use crate::error::{ConfigError, FieldError};

/// Broken rules found so far, in the order they were checked.
#[derive(Default)]
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    /// Records that the field at `path` breaks a rule, and why.
    pub fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError::new(path, reason));
    }

    /// Records `reason` at `path` unless `ok`; returns `ok`.
    pub fn check(&mut self, ok: bool, path: impl Into<String>, reason: impl Into<String>) -> bool {
        if !ok {
            self.push(path, reason);
        }
        ok
    }

    /// `value` when it is given and lies in `range`. A value outside it is
    /// recorded at `path` as "`value` is outside `lo..=hi``note`".
    pub fn in_range<T: PartialOrd + Display>(
        &mut self,
        path: impl Into<String>,
        value: Option<T>,
        range: RangeInclusive<T>,
        note: &str,
    ) -> Option<T> {
        let value = value?;
        if range.contains(&value) {
            return Some(value);
        }
        let reason = format!(
            "{value} is outside {}..={}{note}",
            range.start(),
            range.end()
        );
        self.push(path, reason);
        None
    }

    /// Region, zone, policy and tier names: lower-case letters, digits,
    /// `-` and `_`, 1 to 63 characters.
    pub fn name(&mut self, path: impl Into<String>, name: &str) -> bool {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        self.check(
            ok,
            path,
            "names use lower-case letters, digits, '-' and '_' (1 to 63 characters)",
        )
    }

    /// How many rules have been broken so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `value` when no rule was broken, else every broken rule.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, ConfigError> {
        if self.0.is_empty() {
            value.ok_or_else(|| ConfigError::Invalid(vec![FieldError::new(".", "table is empty")]))
        } else {
            Err(ConfigError::Invalid(self.0))
        }
    }
}
