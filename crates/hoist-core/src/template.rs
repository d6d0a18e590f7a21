//! Templates: a minijinja environment configured the way Ansible users expect.
//!
//! Undefined variables are errors (strict mode), blocks trim their newline, nothing is auto-escaped, and
//! the filters people reach for in Ansible exist (`to_json`, `to_yaml`, `b64encode`, `regex_replace`,
//! `password_hash('scram-sha-256')`, ...). Errors are reported as diagnostics naming the template, the
//! line and the undefined variable, never with variable values (they may be secrets).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};

use crate::diag::{Diagnostics, Kind, Loc, SourceName};
use crate::scram;
use crate::secret::Redactor;
use crate::source::Source;

/// Converts any serializable value into a template value.
pub fn to_value<T: serde::Serialize>(v: T) -> Value {
    Value::from(minijinja::value::Serde(v))
}

/// Builds the template environment. Templates are loaded by name from a templates folder, read
/// through the project's [`Source`]; a name that climbs out of it (`..`, an absolute path) is
/// not found.
/// The instructions one render may run.
pub const FUEL: u64 = 50_000_000;

pub fn environment(
    templates: Option<(&Source, &Path)>,
    redactor: &Redactor,
) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // A template that loops without end (a nested loop over a huge range) fails with a located
    // error instead of hanging `plan`: no template of a deployment comes near this many steps.
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Ansible's defaults: a block tag eats its newline, and a file keeps its final newline.
    if let Ok(syntax) = SyntaxConfig::builder()
        .trim_blocks(true)
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    if let Some((src, dir)) = templates {
        let (src, dir) = (src.clone(), dir.to_path_buf());
        env.set_loader(
            move |name: &str| match src.read_inside(&dir, Path::new(name)) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("cannot read template {name}"),
                )
                .with_source(e)),
            },
        );
    }
    add_filters(&mut env, redactor);
    env
}

fn add_filters(env: &mut Environment<'static>, redactor: &Redactor) {
    env.add_filter("to_json", |v: Value| to_json(&v, false));
    env.add_filter("to_nice_json", |v: Value| to_json(&v, true));
    env.add_filter("to_yaml", to_yaml);
    env.add_filter("to_nice_yaml", to_yaml);
    let r = redactor.clone();
    env.add_filter("b64encode", move |s: String| {
        derived(
            &r,
            &s,
            base64::engine::general_purpose::STANDARD.encode(s.as_bytes()),
        )
    });
    let r = redactor.clone();
    env.add_filter("b64decode", move |s: String| -> Result<String, Error> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("b64decode: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::new(ErrorKind::InvalidOperation, "b64decode: not UTF-8 text"))?;
        Ok(derived(&r, &s, text))
    });
    let r = redactor.clone();
    env.add_filter(
        "regex_replace",
        move |s: String, pattern: String, replacement: String| -> Result<String, Error> {
            let re = regex::Regex::new(&pattern).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("regex_replace: bad pattern: {e}"),
                )
            })?;
            // Ansible (Python) writes group references as \1; the regex crate as ${1}.
            let replacement = backrefs(&replacement);
            Ok(derived(
                &r,
                &s,
                re.replace_all(&s, replacement.as_str()).into_owned(),
            ))
        },
    );
    env.add_filter(
        "regex_search",
        |s: String, pattern: String| -> Result<Value, Error> {
            let re = regex::Regex::new(&pattern).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("regex_search: bad pattern: {e}"),
                )
            })?;
            Ok(re
                .find(&s)
                .map(|m| Value::from(m.as_str()))
                .unwrap_or(Value::from(())))
        },
    );
    let r = redactor.clone();
    env.add_filter("quote", move |s: String| derived(&r, &s, shell_quote(&s)));
    let r = redactor.clone();
    env.add_filter(
        "password_hash",
        move |s: String, scheme: String, kwargs: Kwargs| -> Result<String, Error> {
            let salt: Option<String> = kwargs.get("salt")?;
            kwargs.assert_all_used()?;
            let hash = match scheme.as_str() {
                "scram-sha-256" => scram::scram_sha_256(&s, salt.as_deref()),
                "sha512" => sha512_crypt(&s, salt.as_deref())?,
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!(
                            "password_hash: unsupported scheme {scheme:?} (supported: scram-sha-256, sha512)"
                        ),
                    ));
                }
            };
            r.add(&hash);
            Ok(hash)
        },
    );
    env.add_filter("basename", |s: String| {
        Path::new(&s)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    env.add_filter("dirname", |s: String| {
        Path::new(&s)
            .parent()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    env.add_filter("mandatory", |v: Value| -> Result<Value, Error> {
        if v.is_undefined() {
            Err(Error::new(
                ErrorKind::UndefinedError,
                "mandatory value is undefined",
            ))
        } else {
            Ok(v)
        }
    });
    env.add_filter(
        "ternary",
        |v: Value, yes: Value, no: Value| if v.is_true() { yes } else { no },
    );
    env.add_filter("combine", |a: Value, b: Value| -> Result<Value, Error> {
        let mut out = serde_json::Map::new();
        for v in [a, b] {
            if let serde_json::Value::Object(m) = json_of(&v)? {
                out.extend(m);
            } else {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "combine: both sides must be maps",
                ));
            }
        }
        Ok(to_value(serde_json::Value::Object(out)))
    });
}

/// Registers `output` as a secret when it was derived from one, and returns it.
/// `password_hash('sha512')`, as Ansible's: a crypt(3) SHA-512 hash (`$6$`) that system tools
/// (nginx's `auth_basic`, shadow files) check. Without a salt, one is derived from the password,
/// so the same password renders the same hash and a plan shows no change.
fn sha512_crypt(password: &str, salt: Option<&str>) -> Result<String, Error> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let salt = match salt {
        Some(s) => s.to_owned(),
        None => {
            let digest = sha2::Sha256::digest(format!("hoist password_hash\0{password}"));
            base64::engine::general_purpose::STANDARD_NO_PAD
                .encode(digest)
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(16)
                .collect()
        }
    };
    let bad = |e: String| Error::new(ErrorKind::InvalidOperation, format!("password_hash: {e}"));
    let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT)
        .map_err(|e| bad(format!("{e:?}")))?;
    let hash = sha_crypt::sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &params)
        .map_err(|e| bad(format!("{e:?}")))?;
    Ok(format!("$6${salt}${hash}"))
}

fn derived(redactor: &Redactor, input: &str, output: String) -> String {
    if redactor.contains_secret(input) {
        redactor.add(&output);
    }
    output
}

fn json_of(v: &Value) -> Result<serde_json::Value, Error> {
    serde_json::to_value(v).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("not serializable: {e}"),
        )
    })
}

fn to_json(v: &Value, pretty: bool) -> Result<String, Error> {
    let json = json_of(v)?;
    let text = if pretty {
        serde_json::to_string_pretty(&json)
    } else {
        serde_json::to_string(&json)
    };
    text.map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
}

fn to_yaml(v: Value) -> Result<String, Error> {
    let json = json_of(&v)?;
    let text = serde_saphyr::to_string(&json)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    Ok(text.trim_end_matches('\n').to_owned())
}

fn backrefs(replacement: &str) -> String {
    let re = regex::Regex::new(r"\\(\d+)").expect("static pattern");
    re.replace_all(replacement, "$${${1}}").into_owned()
}

/// Quotes a word for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Where a template comes from, for error messages.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: SourceName,
    /// Line of the template text inside `file` (for templates embedded in YAML values), else 0.
    pub line_offset: u32,
    pub field: String,
}

/// Turns a render error into a diagnostic: template, line, and what is undefined. Never prints values.
pub fn report(err: &Error, origin: &Origin, diags: &mut Diagnostics) {
    let mut line = err.line().map(|l| l as u32).unwrap_or(0);
    if origin.line_offset > 0 {
        line = origin.line_offset + line.saturating_sub(1);
    }
    let (kind, message) = describe(err);
    // Errors inside included templates name the included file.
    let file = match err.name() {
        Some(name) if origin.line_offset == 0 && !origin.file.as_str().ends_with(name) => {
            SourceName(format!("templates/{name}"))
        }
        _ => origin.file.clone(),
    };
    diags.error(&file, Loc::new(line, 0), &origin.field, kind, message);
}

/// A one-line description of a render error and its diagnostic kind.
pub fn describe(err: &Error) -> (Kind, String) {
    let detail = err.detail().map(str::to_owned);
    match err.kind() {
        ErrorKind::UndefinedError => {
            let what = detail.unwrap_or_else(|| "a value is undefined".to_owned());
            (
                Kind::UndefinedVariable,
                format!("undefined variable: {what}"),
            )
        }
        ErrorKind::TemplateNotFound => (
            Kind::UnknownReference,
            format!("template not found: {}", detail.unwrap_or_default()),
        ),
        ErrorKind::SyntaxError => (
            Kind::Template,
            format!("template syntax error: {}", detail.unwrap_or_default()),
        ),
        other => {
            let text = detail.unwrap_or_else(|| other.to_string());
            (Kind::Template, format!("{other}: {text}"))
        }
    }
}

/// Renders the template file `name` (relative to the templates folder).
pub fn render_file(env: &Environment<'static>, name: &str, ctx: &Value) -> Result<String, Error> {
    env.get_template(name)?.render(ctx)
}

/// Renders an inline template string (a variable value, a playbook field).
pub fn render_str(env: &Environment<'static>, source: &str, ctx: &Value) -> Result<String, Error> {
    env.render_str(source, ctx)
}

/// Whether a string contains template syntax and so needs rendering.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// The templates folder of a project.
pub fn templates_dir(root: &Path) -> PathBuf {
    root.join("templates")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, ctx: serde_json::Value) -> Result<String, Error> {
        let env = environment(None, &Redactor::new());
        render_str(&env, source, &to_value(ctx))
    }

    #[test]
    fn ansible_filters() {
        let out = render(
            "{{ m | to_json }} {{ 'a b' | quote }} {{ 'x' | b64encode }} {{ 'a-1' | regex_replace('-(\\\\d)', '_\\\\1') }} {{ missing | default('d') }}",
            serde_json::json!({"m": {"k": [1, 2]}}),
        );
        assert_eq!(out.ok().as_deref(), Some(r#"{"k":[1,2]} 'a b' eA== a_1 d"#));
    }

    #[test]
    fn undefined_names_the_variable() {
        let err = render("port {{ db_port }}", serde_json::json!({})).expect_err("error");
        let (kind, message) = describe(&err);
        assert_eq!(kind, Kind::UndefinedVariable);
        assert!(message.contains("db_port"), "{message}");
    }

    #[test]
    fn password_hashes_are_crypt_sha512_stable_and_secret() {
        let r = Redactor::new();
        r.add("s3cr3t-value");
        let env = environment(None, &r);
        let ctx = to_value(serde_json::json!({"p": "s3cr3t-value"}));
        let once = render_str(&env, "{{ p | password_hash('sha512') }}", &ctx).unwrap_or_default();
        let again = render_str(&env, "{{ p | password_hash('sha512') }}", &ctx).unwrap_or_default();
        assert!(once.starts_with("$6$"), "{once}");
        assert_eq!(once, again, "no change from one plan to the next");
        let salt = once.split('$').nth(2).unwrap_or_default();
        assert_eq!(salt.len(), 16, "{once}");
        assert!(
            sha512_crypt("s3cr3t-value", Some(salt)).ok().as_deref() == Some(once.as_str()),
            "{once}"
        );
        assert_ne!(sha512_crypt("another", Some(salt)).ok(), Some(once.clone()));
        assert!(r.is_secret(&once));
        // What glibc's crypt(3), which nginx calls, gives for this salt.
        assert_eq!(
            sha512_crypt("hello", Some("saltstring")).unwrap_or_default(),
            "$6$saltstring$FAGYDyoYriJZZozrqxKlj3e8sB/i7oiBKr0IsSILeeFjOstTzTN7VBrJXtFNTHuRzUnhy.z43X6Jd3KbHZ.me/"
        );
        assert!(render_str(&env, "{{ p | password_hash('md5') }}", &ctx).is_err());
    }

    #[test]
    fn derived_values_of_secrets_are_secret() {
        let r = Redactor::new();
        r.add("s3cr3t-value");
        let env = environment(None, &r);
        let out = render_str(
            &env,
            "{{ p | b64encode }}",
            &to_value(serde_json::json!({"p": "s3cr3t-value"})),
        )
        .unwrap_or_default();
        assert!(r.is_secret(&out));
    }
}
