//! Reading a value off a Prometheus text page.
//!
//! A series that is absent is `None`, never 0: counters created at 0 when
//! a table is installed would otherwise make "it was counted" and "it is
//! missing" look alike. Compare a series before and after the event, and
//! name one labelled series exactly (a substring like `...} 1` also
//! matches 10 to 19).

/// The value of one series (`name{labels}` exactly as exposed, or a bare
/// name), `None` when the page does not have it.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    let series = series.trim_end();
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        // The series name must end here: `x_total` is not `x_total_sum`.
        if !rest.starts_with(' ') {
            return None;
        }
        rest.trim().parse().ok()
    })
}

/// [`metric`] for a series that must be there; panics naming it if not.
pub fn metric_value(text: &str, series: &str) -> f64 {
    match metric(text, series) {
        Some(v) => v,
        None => panic!("{series} is not on the metrics page:\n{text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_matched_whole_and_absence_is_none() {
        let page = "x_total{a=\"1\"} 12\nx_total 3\nx_total_sum 9\n";
        assert_eq!(metric(page, "x_total{a=\"1\"}"), Some(12.0));
        assert_eq!(metric(page, "x_total"), Some(3.0));
        assert_eq!(metric(page, "x_total "), Some(3.0));
        assert_eq!(metric(page, "x_total{a=\"2\"}"), None);
        assert_eq!(metric(page, "x"), None);
        assert_eq!(metric_value(page, "x_total_sum"), 9.0);
    }
}
