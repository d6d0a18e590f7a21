//! The analytics endpoints' parameters, validated as the original's serializers did: every
//! field's errors as lists, view-level errors as strings, and the default windows.

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use crate::json::respond;

use super::{DATE_MESSAGE, ORDER_MESSAGE};

pub(in crate::routes) struct Params(Vec<(String, String)>);

impl Params {
    pub(in crate::routes) fn parse(q: &Option<String>) -> Params {
        Params(
            url::form_urlencoded::parse(q.as_deref().unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last value of `key`, as Django's QueryDict gives it.
    pub(in crate::routes) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A window bound: an ISO datetime (naive means UTC), or a date (its first instant for `start`, its
/// last microsecond for `end`).
pub(super) fn parse_bound(v: &str, end: bool) -> Option<DateTime<Utc>> {
    let v = v.trim();
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        let t = if end {
            d.and_hms_micro_opt(23, 59, 59, 999_999)?
        } else {
            d.and_hms_opt(0, 0, 0)?
        };
        return Some(t.and_utc());
    }
    crate::event::parse_datetime(v)
}

/// Serializer-style validation: every field's errors, as lists, in field order.
#[derive(Default)]
pub(in crate::routes) struct Form {
    pub(super) errors: Map<String, Value>,
    pub(super) order: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Form {
    pub(in crate::routes) fn fail(&mut self, field: &str, message: impl Into<String>) {
        if let Some(list) = self
            .errors
            .entry(field.to_owned())
            .or_insert_with(|| json!([]))
            .as_array_mut()
        {
            list.push(Value::String(message.into()));
        }
    }

    pub(super) fn bound(&mut self, p: &Params, field: &str, end: bool) -> Option<DateTime<Utc>> {
        let v = p.get(field)?;
        let t = parse_bound(v, end);
        if t.is_none() {
            self.fail(field, DATE_MESSAGE);
        }
        t
    }

    /// A CharField that may be absent but not blank (whitespace is trimmed first).
    pub(in crate::routes) fn text(&mut self, p: &Params, field: &str) -> Option<String> {
        let v = p.get(field)?.trim();
        if v.is_empty() {
            self.fail(field, "This field may not be blank.");
            return None;
        }
        Some(v.to_owned())
    }

    pub(in crate::routes) fn int(
        &mut self,
        p: &Params,
        field: &str,
        default: i64,
        min: i64,
        max: i64,
    ) -> i64 {
        let Some(v) = p.get(field) else {
            return default;
        };
        match v.trim().parse::<i64>() {
            Err(_) => {
                self.fail(field, "A valid integer is required.");
                default
            }
            Ok(n) if n > max => {
                self.fail(
                    field,
                    format!("Ensure this value is less than or equal to {max}."),
                );
                default
            }
            Ok(n) if n < min => {
                self.fail(
                    field,
                    format!("Ensure this value is greater than or equal to {min}."),
                );
                default
            }
            Ok(n) => n,
        }
    }

    pub(super) fn choice<'a>(
        &mut self,
        p: &Params,
        field: &str,
        choices: &[&'a str],
        default: &'a str,
    ) -> &'a str {
        let Some(v) = p.get(field) else {
            return default;
        };
        match choices.iter().find(|c| **c == v) {
            Some(c) => c,
            None => {
                self.fail(field, format!("\"{v}\" is not a valid choice."));
                default
            }
        }
    }

    /// DRF's BooleanField values.
    pub(super) fn boolean(&mut self, p: &Params, field: &str) -> bool {
        const TRUE: [&str; 14] = [
            "t", "T", "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "1",
        ];
        const FALSE: [&str; 15] = [
            "f", "F", "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF",
            "0", "",
        ];
        match p.get(field) {
            None => false,
            Some(v) if TRUE.contains(&v) => true,
            Some(v) if FALSE.contains(&v) => false,
            Some(_) => {
                self.fail(field, "Must be a valid boolean.");
                false
            }
        }
    }

    pub(in crate::routes) fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors, or the cross-field check once every field is valid.
    pub(in crate::routes) fn finish(mut self) -> Result<(), Response> {
        if self.errors.is_empty()
            && let Some((start, end)) = self.order
            && start > end
        {
            self.fail("detail", ORDER_MESSAGE);
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(respond(
                StatusCode::BAD_REQUEST,
                &Value::Object(self.errors),
            ))
        }
    }
}

/// A view-level error: a string under the key.
pub(super) fn string_error(field: &str, message: &str) -> Response {
    respond(StatusCode::BAD_REQUEST, &json!({ field: message }))
}

/// The window the serializer validated; out of order when both are given is its cross-field
/// check, a list error made in [`Form::finish`].
pub(super) fn window(
    form: &mut Form,
    p: &Params,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let start = form.bound(p, "start", false);
    let end = form.bound(p, "end", true);
    form.order = start.zip(end);
    (start, end)
}

/// The view's defaults: `end` is now, `start` is `end` minus `span`; out of order after them is the
/// view's string error (spec §11 #7 keeps both shapes).
pub(super) fn defaults(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    span: TimeDelta,
) -> Result<(DateTime<Utc>, DateTime<Utc>), Response> {
    let end = end.unwrap_or_else(Utc::now);
    let start = start.unwrap_or(end - span);
    if start > end {
        return Err(respond(
            StatusCode::BAD_REQUEST,
            &json!({ "detail": ORDER_MESSAGE }),
        ));
    }
    Ok((start, end))
}
