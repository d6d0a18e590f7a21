//! The ApiRequest resource: its fields, and validation with the original serializer's rules and
//! messages, shared by create, update and ingest.

use chrono::{
    DateTime, Datelike as _, NaiveDate, NaiveDateTime, TimeZone as _, Timelike as _, Utc,
};
use serde_json::{Map, Value, json};

use crate::json::utc_z;

pub const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// An event, validated.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Event {
    pub time: DateTime<Utc>,
    pub service: String,
    pub endpoint: String,
    pub method: String,
    pub status_code: i16,
    pub latency_ms: i32,
    pub trace_id: Option<String>,
    pub user_ref: Option<String>,
    pub tags: sqlx::types::Json<Value>,
}

/// An event as stored, with its id.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Stored {
    pub id: i64,
    #[sqlx(flatten)]
    pub event: Event,
}

impl Event {
    /// The fields as the API writes and takes them, in the original's order.
    pub fn to_json(&self) -> Value {
        let e = self;
        json!({
            "time": utc_z(&e.time),
            "service": e.service,
            "endpoint": e.endpoint,
            "method": e.method,
            "status_code": e.status_code,
            "latency_ms": e.latency_ms,
            "trace_id": e.trace_id,
            "user_ref": e.user_ref,
            "tags": e.tags.0,
        })
    }
}

impl Stored {
    /// The JSON object: `id`, then the event's fields.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        if let Value::Object(fields) = self.event.to_json() {
            m.extend(fields);
        }
        Value::Object(m)
    }
}

/// Field -> messages, in field order (DRF's shape).
pub type Errors = Map<String, Value>;

const DATETIME_FORMAT: &str = "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].";

/// Validates an input object. With `base` (a partial update), absent fields keep the base's values;
/// otherwise `time`, `service`, `endpoint`, `method`, `status_code` and `latency_ms` are required.
/// Unknown keys and `id` are ignored.
pub fn validate(obj: &Map<String, Value>, base: Option<&Event>) -> Result<Event, Errors> {
    let mut errors = Errors::new();
    let mut err = |field: &str, msg: String| {
        errors.insert(field.to_owned(), json!([msg]));
    };
    let required = |field: &str| -> Option<&Value> { obj.get(field) };

    let time = match required("time") {
        None => base
            .map(|b| b.time)
            .ok_or("This field is required.".to_owned()),
        Some(Value::Null) => Err("This field may not be null.".to_owned()),
        Some(Value::String(s)) => parse_datetime(s).ok_or_else(|| DATETIME_FORMAT.to_owned()),
        Some(_) => Err(DATETIME_FORMAT.to_owned()),
    };
    let service = text(
        required("service"),
        base.map(|b| b.service.clone()),
        100,
        false,
    );
    let endpoint = text(
        required("endpoint"),
        base.map(|b| b.endpoint.clone()),
        255,
        false,
    );
    let method = match required("method") {
        None => base
            .map(|b| b.method.clone())
            .ok_or("This field is required.".to_owned()),
        Some(Value::Null) => Err("This field may not be null.".to_owned()),
        Some(v) => {
            let s = scalar_text(v).unwrap_or_else(|| v.to_string());
            if METHODS.contains(&s.as_str()) {
                Ok(s)
            } else {
                Err(format!("\"{s}\" is not a valid choice."))
            }
        }
    };
    let status_code = integer(
        required("status_code"),
        base.map(|b| i64::from(b.status_code)),
        0,
        32767,
    )
    .and_then(|n| {
        if (100..=599).contains(&n) {
            Ok(n as i16)
        } else {
            Err("status_code must be a valid HTTP status (100..599).".to_owned())
        }
    });
    let latency_ms = integer(
        required("latency_ms"),
        base.map(|b| i64::from(b.latency_ms)),
        0,
        2_147_483_647,
    )
    .map(|n| n as i32);
    let trace_id = optional_text(required("trace_id"), base.map(|b| b.trace_id.clone()), 128);
    let user_ref = optional_text(required("user_ref"), base.map(|b| b.user_ref.clone()), 128);
    let tags = match required("tags") {
        None => Ok(base.map(|b| b.tags.0.clone()).unwrap_or_else(|| json!({}))),
        Some(Value::Null) => Err("This field may not be null.".to_owned()),
        // PostgreSQL's jsonb cannot hold U+0000 anywhere in a document.
        Some(v @ Value::Object(_)) if has_null_character(v) => Err(NULL_CHARACTERS.to_owned()),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(_) => Err("tags must be a JSON object (dictionary).".to_owned()),
    };

    let time = time.map_err(|m| err("time", m)).ok();
    let service = service.map_err(|m| err("service", m)).ok();
    let endpoint = endpoint.map_err(|m| err("endpoint", m)).ok();
    let method = method.map_err(|m| err("method", m)).ok();
    let status_code = status_code.map_err(|m| err("status_code", m)).ok();
    let latency_ms = latency_ms.map_err(|m| err("latency_ms", m)).ok();
    let trace_id = trace_id.map_err(|m| err("trace_id", m)).ok();
    let user_ref = user_ref.map_err(|m| err("user_ref", m)).ok();
    let tags = tags.map_err(|m| err("tags", m)).ok();
    match (
        time,
        service,
        endpoint,
        method,
        status_code,
        latency_ms,
        trace_id,
        user_ref,
        tags,
    ) {
        (
            Some(time),
            Some(service),
            Some(endpoint),
            Some(method),
            Some(status_code),
            Some(latency_ms),
            Some(trace_id),
            Some(user_ref),
            Some(tags),
        ) => Ok(Event {
            time,
            service,
            endpoint,
            method,
            status_code,
            latency_ms,
            trace_id,
            user_ref,
            tags: sqlx::types::Json(tags),
        }),
        _ => Err(errors),
    }
}

/// DRF's CharField message for a string holding U+0000 (which PostgreSQL text cannot store).
pub const NULL_CHARACTERS: &str = "Null characters are not allowed.";

/// Whether a JSON value holds U+0000 in any key or string, at any depth.
fn has_null_character(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_null_character),
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| k.contains('\0') || has_null_character(v)),
        _ => false,
    }
}

/// DRF's CharField: strings, numbers (as text); trimmed; not blank unless allowed; a max length.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn text(
    v: Option<&Value>,
    base: Option<String>,
    max: usize,
    _allow_blank: bool,
) -> Result<String, String> {
    let s = match v {
        None => return base.ok_or("This field is required.".to_owned()),
        Some(Value::Null) => return Err("This field may not be null.".to_owned()),
        Some(v) => scalar_text(v).ok_or("Not a valid string.".to_owned())?,
    };
    let s = s.trim().to_owned();
    if s.contains('\0') {
        return Err(NULL_CHARACTERS.to_owned());
    }
    if s.is_empty() {
        return Err("This field may not be blank.".to_owned());
    }
    if s.chars().count() > max {
        return Err(format!(
            "Ensure this field has no more than {max} characters."
        ));
    }
    Ok(s)
}

fn optional_text(
    v: Option<&Value>,
    base: Option<Option<String>>,
    max: usize,
) -> Result<Option<String>, String> {
    let s = match v {
        None => return Ok(base.flatten()),
        Some(Value::Null) => return Ok(None),
        Some(v) => scalar_text(v).ok_or("Not a valid string.".to_owned())?,
    };
    let s = s.trim().to_owned();
    if s.contains('\0') {
        return Err(NULL_CHARACTERS.to_owned());
    }
    if s.chars().count() > max {
        return Err(format!(
            "Ensure this field has no more than {max} characters."
        ));
    }
    Ok(Some(s))
}

/// DRF's IntegerField: integers, integral floats and numeric strings (`"200"`, `"200.0"`), bounded.
fn integer(v: Option<&Value>, base: Option<i64>, min: i64, max: i64) -> Result<i64, String> {
    let invalid = || "A valid integer is required.".to_owned();
    let n = match v {
        None => return base.ok_or("This field is required.".to_owned()),
        Some(Value::Null) => return Err("This field may not be null.".to_owned()),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i,
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => f as i64,
            _ => return Err(invalid()),
        },
        Some(Value::String(s)) => {
            if s.len() > 1000 {
                return Err("String value too large.".to_owned());
            }
            let t = s.trim();
            let t = t
                .split_once('.')
                .filter(|(_, frac)| frac.chars().all(|c| c == '0'))
                .map(|(i, _)| i)
                .unwrap_or(t);
            t.parse::<i64>().map_err(|_| invalid())?
        }
        Some(_) => return Err(invalid()),
    };
    if n < min {
        return Err(format!(
            "Ensure this value is greater than or equal to {min}."
        ));
    }
    if n > max {
        return Err(format!("Ensure this value is less than or equal to {max}."));
    }
    Ok(n)
}

/// ISO-8601 date-times as Django accepts them; a naive value is UTC; a bare date is midnight. As
/// Python's datetime, a leap second (`:60`) and the year 0 are not date-times (chrono would take
/// both, and PostgreSQL would store `10:00:60` as 10:01:00).
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    parse_any(s).filter(|t| t.year() >= 1 && t.nanosecond() < 1_000_000_000)
}

fn parse_any(s: &str) -> Option<DateTime<Utc>> {
    static ISO: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2})(?::(\d{1,2})(?::(\d{1,2})(?:[.,](\d{1,9}))?)?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$",
        )
        .ok()
    });
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        // A leap second in the offset's own time: refused like Python's datetime does.
        if t.nanosecond() >= 1_000_000_000 {
            return None;
        }
        return Some(t.with_timezone(&Utc));
    }
    let c = ISO.as_ref()?.captures(s)?;
    let num = |i: usize| {
        c.get(i)
            .map(|m| m.as_str().parse::<u32>().ok())
            .unwrap_or(Some(0))
    };
    let date = NaiveDate::from_ymd_opt(c[1].parse().ok()?, num(2)?, num(3)?)?;
    let mut nanos = 0u32;
    if let Some(f) = c.get(7) {
        let digits: String = format!("{:0<9}", f.as_str()).chars().take(9).collect();
        nanos = digits.parse().ok()?;
        nanos = nanos / 1_000 * 1_000;
    }
    let naive: NaiveDateTime = date.and_hms_nano_opt(num(4)?, num(5)?, num(6)?, nanos)?;
    let offset_s: i32 = match c.get(8).map(|m| m.as_str()) {
        None | Some("Z") => 0,
        Some(o) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let digits: String = o[1..].chars().filter(char::is_ascii_digit).collect();
            let h: i32 = digits.get(0..2)?.parse().ok()?;
            let m: i32 = digits
                .get(2..4)
                .map(|m| m.parse().ok())
                .unwrap_or(Some(0))?;
            sign * (h * 3600 + m * 60)
        }
    };
    let tz = chrono::FixedOffset::east_opt(offset_s)?;
    tz.from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn messages_match_the_original() {
        let e = validate(&obj(json!({"not": "an event"})), None)
            .err()
            .unwrap_or_default();
        assert_eq!(
            Value::Object(e).to_string(),
            r#"{"time":["This field is required."],"service":["This field is required."],"endpoint":["This field is required."],"method":["This field is required."],"status_code":["This field is required."],"latency_ms":["This field is required."]}"#
        );
        let e = validate(&obj(json!({"time": "nope", "service": " ", "endpoint": "/x", "method": "NOPE", "status_code": 700, "latency_ms": -1, "tags": []})), None)
            .err()
            .unwrap_or_default();
        assert_eq!(
            Value::Object(e).to_string(),
            r#"{"time":["Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."],"service":["This field may not be blank."],"method":["\"NOPE\" is not a valid choice."],"status_code":["status_code must be a valid HTTP status (100..599)."],"latency_ms":["Ensure this value is greater than or equal to 0."],"tags":["tags must be a JSON object (dictionary)."]}"#
        );
        let ok = validate(
            &obj(
                json!({"time": "2025-12-14T01:10:00", "service": " auth ", "endpoint": "/login", "method": "POST", "status_code": "500", "latency_ms": 150.0}),
            ),
            None,
        );
        let ok = ok.ok().map(|e| {
            (
                utc_z(&e.time),
                e.service,
                e.status_code,
                e.latency_ms,
                e.tags.0,
            )
        });
        assert_eq!(
            ok,
            Some((
                "2025-12-14T01:10:00Z".into(),
                "auth".into(),
                500,
                150,
                json!({})
            ))
        );
    }

    #[test]
    fn leap_seconds_and_the_year_zero_are_not_datetimes() {
        for bad in [
            "2025-12-14T10:00:60Z",
            "2025-12-14T23:59:60+01:00",
            "2025-12-14 10:00:60",
            "0000-01-01T00:00:00Z",
            "0000-06-01",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
        assert!(parse_datetime("0001-01-01T00:00:00Z").is_some());
        assert!(parse_datetime("2025-12-14T10:00:59.999999Z").is_some());
    }

    #[test]
    fn null_characters_are_refused_in_every_text_field_and_tag() {
        let good = json!({"time": "2025-12-14T10:00:00Z", "service": "api", "endpoint": "/a", "method": "GET", "status_code": 200, "latency_ms": 1});
        for (field, value) in [
            ("service", json!("a\u{0}b")),
            ("endpoint", json!("/x\u{0}")),
            ("trace_id", json!("t\u{0}")),
            ("user_ref", json!("\u{0}")),
            ("tags", json!({"env": "a\u{0}"})),
            ("tags", json!({"k\u{0}": "v"})),
            ("tags", json!({"deep": [{"x": "\u{0}"}]})),
        ] {
            let mut o = obj(good.clone());
            o.insert(field.to_owned(), value);
            let e = validate(&o, None).expect_err(field);
            assert_eq!(
                e.get(field),
                Some(&json!([NULL_CHARACTERS])),
                "{field}: {e:?}"
            );
        }
    }

    #[test]
    fn datetimes() {
        let t = |s: &str| parse_datetime(s).map(|t| utc_z(&t));
        assert_eq!(
            t("2025-12-14T01:10:00+02:00").as_deref(),
            Some("2025-12-13T23:10:00Z")
        );
        assert_eq!(
            t("2025-12-28 22:12:20.014").as_deref(),
            Some("2025-12-28T22:12:20.014000Z")
        );
        assert_eq!(t("2025-12-14").as_deref(), Some("2025-12-14T00:00:00Z"));
        assert_eq!(t("14/12/2025"), None);
    }
}
