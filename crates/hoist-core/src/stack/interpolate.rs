//! Compose-style `${...}` interpolation over the inventory's variables.
//!
//! Supported: `$name`, `${name}`, `${name:-default}` (default when unset or empty), `${name-default}`
//! (when unset), `${name:?message}` / `${name?message}` (error), `${name:+alt}` / `${name+alt}`, and
//! `$$` for a literal `$`. Unlike compose, an unset variable without a default is an error: a typo
//! should not deploy an empty password.

/// Expands `input`; `lookup` returns the value of a variable (None when unset).
pub fn interpolate(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = closing_brace(r).ok_or_else(|| format!("unterminated `${{` in {input:?}"))?;
            out.push_str(&expand(&r[..end], lookup)?);
            rest = &r[end + 1..];
        } else {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            // A name starts with a letter or `_` (compose's rule): `$2a$...` is no variable.
            if len == 0 || rest.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(format!(
                    "`$` must be followed by a variable name (a letter or `_` first), `{{` or `$` in {input:?} (write `$$` for a literal `$`)"
                ));
            }
            let name = &rest[..len];
            out.push_str(&lookup(name).ok_or_else(|| format!("variable `{name}` is not set"))?);
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` closing the expression at the start of `s`, allowing nested `${...}`.
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn expand(expr: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let len = expr
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(expr.len());
    let (name, op) = expr.split_at(len);
    if name.is_empty() {
        return Err(format!("`${{{expr}}}` does not start with a variable name"));
    }
    let value = lookup(name);
    let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
    let nested = |s: &str| interpolate(s, lookup);
    match op {
        "" => value.ok_or_else(|| format!("variable `{name}` is not set")),
        _ if op.starts_with(":-") => {
            if set_nonempty {
                Ok(value.unwrap_or_default())
            } else {
                nested(&op[2..])
            }
        }
        _ if op.starts_with('-') => match value {
            Some(v) => Ok(v),
            None => nested(&op[1..]),
        },
        _ if op.starts_with(":?") => {
            if set_nonempty {
                Ok(value.unwrap_or_default())
            } else {
                Err(format!("variable `{name}`: {}", &op[2..]))
            }
        }
        _ if op.starts_with('?') => value.ok_or_else(|| format!("variable `{name}`: {}", &op[1..])),
        _ if op.starts_with(":+") => {
            if set_nonempty {
                nested(&op[2..])
            } else {
                Ok(String::new())
            }
        }
        _ if op.starts_with('+') => {
            if value.is_some() {
                nested(&op[1..])
            } else {
                Ok(String::new())
            }
        }
        _ => Err(format!("unsupported expression `${{{expr}}}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &str) -> Result<String, String> {
        interpolate(s, &|n| match n {
            "port" => Some("5432".into()),
            "empty" => Some(String::new()),
            _ => None,
        })
    }

    #[test]
    fn compose_forms() {
        assert_eq!(run("${port}:$port/$$x").as_deref(), Ok("5432:5432/$x"));
        assert_eq!(run("${nope:-${port}}").as_deref(), Ok("5432"));
        assert_eq!(
            run("${empty:-d}|${empty-d}|${nope-d}").as_deref(),
            Ok("d||d")
        );
        assert_eq!(run("${port:+on}${nope:+on}").as_deref(), Ok("on"));
        assert_eq!(
            run("${nope:?set it}"),
            Err("variable `nope`: set it".into())
        );
        assert_eq!(run("${nope}"), Err("variable `nope` is not set".into()));
        assert!(run("${port").is_err());
    }
}
