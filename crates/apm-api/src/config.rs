//! Settings from the environment, with the original's variable names and fallbacks (spec §4.1, §9).

use std::time::Duration;

/// One PostgreSQL endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub database: String,
    pub primary: HostPort,
    pub replicas: Vec<HostPort>,
    /// Runs migrations.
    pub admin: Credentials,
    /// Writes, and reads that must see them.
    pub writer: Credentials,
    /// Reads on replicas.
    pub reader: Credentials,
    pub sslmode: Option<String>,
    /// The CA a server's certificate is verified by (`DB_SSLROOTCERT`, for verify-ca/verify-full).
    pub sslrootcert: Option<String>,
    pub page_size: i64,
    pub read_after_write_ttl: Duration,
    pub connect_timeout: Duration,
    /// The longest a statement may run (`DB_STATEMENT_TIMEOUT`, seconds; 30).
    pub statement_timeout: Duration,
    /// The longest a request may take before a 503 (`APM_REQUEST_TIMEOUT`, seconds; 50, under
    /// the proxy's 60 s read timeout, so that the caller gets the API's JSON, not the proxy's 504).
    pub request_timeout: Duration,
    pub connect_retries: u32,
    pub connect_delay: Duration,
    pub skip_migrate: bool,
    pub bind: String,
    /// The host names requests may name in `Host` (`ALLOWED_HOSTS`, comma-separated, as Django's);
    /// any when empty or `*`.
    pub allowed_hosts: Vec<String>,
    /// Requests need a token (`APM_AUTH`, on unless `off`).
    pub auth: bool,
    /// The deployment's tokens, made to exist as listed by the migration step (`APM_TOKENS_FILE`).
    pub tokens_file: Option<String>,
    /// Prometheus, for the console's platform page (`PROMETHEUS_URL` and its login); none: the
    /// page says it is not configured.
    pub prometheus: Option<crate::platform::Settings>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("Missing POSTGRES_DB/DB_NAME.")]
    MissingDatabase,
    #[error("Missing DB user/password (POSTGRES_USER/PASSWORD or POSTGRES_WRITER_USER/PASSWORD).")]
    MissingCredentials,
    #[error("Invalid host entry: {0:?}")]
    InvalidHost(String),
    #[error("Invalid port in host entry: {0:?}")]
    InvalidPort(String),
    #[error("APM_AUTH must be `on` or `off`, got {0:?}")]
    BadAuth(String),
    #[error(transparent)]
    Prometheus(#[from] crate::platform::Error),
    #[error("{name} must be an integer, got {value:?}")]
    NotAnInteger { name: &'static str, value: String },
}

/// The first non-empty of the named variables, trimmed.
fn first(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| {
        std::env::var(n)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    })
}

fn int(name: &'static str, default: i64) -> Result<i64, ConfigError> {
    match first(&[name]) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| ConfigError::NotAnInteger { name, value: v }),
    }
}

/// Parses `host[:port]` or `[ipv6]:port`; `default_port` when no port is given.
pub fn parse_host(entry: &str, default_port: u16) -> Result<HostPort, ConfigError> {
    let e = entry.trim();
    if e.is_empty() {
        return Err(ConfigError::InvalidHost(entry.to_owned()));
    }
    let (host, port) = if let Some(rest) = e.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| ConfigError::InvalidHost(entry.to_owned()))?;
        match after.strip_prefix(':') {
            Some(p) => (h.to_owned(), Some(p)),
            None if after.is_empty() => (h.to_owned(), None),
            None => return Err(ConfigError::InvalidHost(entry.to_owned())),
        }
    } else if e.matches(':').count() > 1 {
        (e.to_owned(), None)
    } else {
        match e.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (e.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(ConfigError::InvalidHost(entry.to_owned()));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| ConfigError::InvalidPort(entry.to_owned()))?,
        None => default_port,
    };
    Ok(HostPort { host, port })
}

/// [`Settings::host_allowed`]: `allowed` empty allows any host.
pub fn host_allowed(allowed: &[String], host: &str) -> bool {
    if allowed.is_empty() {
        return true;
    }
    // Django's host_validation_re: a name (or `[v6]`), then at most `:` and a port's digits;
    // anything else (`a:@evil`, `[::1]evil`) is no host at all.
    let port_ok = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, "")) => v6,
            Some((v6, port)) if port.strip_prefix(':').is_some_and(port_ok) => v6,
            _ => return false,
        },
        None => match host.split_once(':') {
            None => host,
            Some((name, port)) if port_ok(port) => name,
            Some(_) => return false,
        },
    };
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
    };
    if !name_ok(name) {
        return false;
    }
    let name = name.to_ascii_lowercase();
    allowed.iter().any(|a| {
        let a = a.trim_start_matches('[').trim_end_matches(']');
        // Django's leading dot: the domain and every subdomain.
        match a.strip_prefix('.') {
            Some(domain) => name == domain || name.ends_with(&format!(".{domain}")),
            None => name == a,
        }
    })
}

impl Settings {
    /// Whether a request's `Host` header (a name or address, and maybe a port) is allowed.
    pub fn host_allowed(&self, host: &str) -> bool {
        host_allowed(&self.allowed_hosts, host)
    }

    pub fn from_env() -> Result<Settings, ConfigError> {
        let database = first(&["POSTGRES_DB", "DB_NAME"]).ok_or(ConfigError::MissingDatabase)?;
        let host = first(&["POSTGRES_HOST", "DB_HOST"]).unwrap_or_else(|| "localhost".into());
        let port_text = first(&["POSTGRES_PORT", "DB_PORT"]).unwrap_or_else(|| "5432".into());
        let port: u16 = port_text
            .parse()
            .map_err(|_| ConfigError::InvalidPort(port_text.clone()))?;
        let admin_user = first(&["POSTGRES_USER", "DB_USER"]);
        let admin_password = first(&["POSTGRES_PASSWORD", "DB_PASSWORD"]);
        let writer_user =
            first(&["POSTGRES_WRITER_USER", "POSTGRES_APP_USER"]).or_else(|| admin_user.clone());
        let writer_password = first(&["POSTGRES_WRITER_PASSWORD", "POSTGRES_APP_PASSWORD"])
            .or_else(|| admin_password.clone());
        let (Some(wu), Some(wp)) = (writer_user, writer_password) else {
            return Err(ConfigError::MissingCredentials);
        };
        let writer = Credentials {
            user: wu,
            password: wp,
        };
        let admin = match (admin_user, admin_password) {
            (Some(user), Some(password)) => Credentials { user, password },
            _ => writer.clone(),
        };
        let reader = match (
            first(&["POSTGRES_READER_USER", "POSTGRES_READONLY_USER"]),
            first(&["POSTGRES_READER_PASSWORD", "POSTGRES_READONLY_PASSWORD"]),
        ) {
            (Some(user), Some(password)) => Credentials { user, password },
            _ => writer.clone(),
        };
        let primary = match first(&["CLUSTER_DB_PRIMARY_HOST"]) {
            Some(p) => parse_host(&p, port)?,
            None => HostPort { host, port },
        };
        let replicas = match first(&["CLUSTER_DB_REPLICA_HOSTS"]) {
            Some(list) => list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|r| parse_host(r, primary.port))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let truthy = |n: &str| {
            first(&[n]).is_some_and(|v| {
                matches!(
                    v.to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "y" | "on"
                )
            })
        };
        Ok(Settings {
            database,
            primary,
            replicas,
            admin,
            writer,
            reader,
            sslmode: first(&["DB_SSLMODE"]),
            sslrootcert: first(&["DB_SSLROOTCERT", "PGSSLROOTCERT"]),
            page_size: int("DRF_PAGE_SIZE", 50)?.max(1),
            read_after_write_ttl: Duration::from_secs(int("READ_AFTER_WRITE_TTL", 2)?.max(0) as u64),
            connect_timeout: Duration::from_secs(int("DB_CONNECT_TIMEOUT", 5)?.max(1) as u64),
            statement_timeout: Duration::from_secs(int("DB_STATEMENT_TIMEOUT", 30)?.max(1) as u64),
            request_timeout: Duration::from_secs(int("APM_REQUEST_TIMEOUT", 50)?.max(1) as u64),
            connect_retries: int("DB_CONNECT_RETRIES", 60)?.max(1) as u32,
            connect_delay: Duration::from_secs(int("DB_CONNECT_DELAY", 1)?.max(0) as u64),
            skip_migrate: truthy("SKIP_MIGRATE"),
            bind: first(&["APM_BIND"]).unwrap_or_else(|| "0.0.0.0:8000".into()),
            auth: match first(&["APM_AUTH"])
                .map(|v| v.to_ascii_lowercase())
                .as_deref()
            {
                None | Some("on") => true,
                Some("off") => false,
                Some(other) => return Err(ConfigError::BadAuth(other.to_owned())),
            },
            tokens_file: first(&["APM_TOKENS_FILE"]),
            prometheus: crate::platform::Settings::from_env()?,
            allowed_hosts: first(&["ALLOWED_HOSTS"])
                .map(|list| {
                    list.split(',')
                        .map(|h| h.trim().to_ascii_lowercase())
                        .filter(|h| !h.is_empty() && h != "*")
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_as_django_reads_them() {
        assert!(host_allowed(&[], "evil.example"));
        let allowed: Vec<String> = ["apm.example", ".corp.example", "10.0.0.3", "::1"]
            .map(str::to_owned)
            .to_vec();
        for ok in [
            "apm.example",
            "APM.example:8443",
            "corp.example",
            "a.b.corp.example",
            "10.0.0.3:443",
            "[::1]:8000",
        ] {
            assert!(host_allowed(&allowed, ok), "{ok}");
        }
        for no in [
            "evil.example",
            "apm.example.evil",
            "xcorp.example",
            "10.0.0.4",
            "",
            "10.0.0.3:@evil.example",
            "10.0.0.3:443@evil.example",
            "[::1]evil.example",
            "apm.example:",
            "apm.example/evil",
        ] {
            assert!(!host_allowed(&allowed, no), "{no}");
        }
    }

    #[test]
    fn host_entries() {
        assert_eq!(
            parse_host("db", 5432).ok(),
            Some(HostPort {
                host: "db".into(),
                port: 5432
            })
        );
        assert_eq!(
            parse_host("10.0.0.1:25433", 5432).ok(),
            Some(HostPort {
                host: "10.0.0.1".into(),
                port: 25433
            })
        );
        assert_eq!(
            parse_host("[::1]:6432", 5432).ok(),
            Some(HostPort {
                host: "::1".into(),
                port: 6432
            })
        );
        assert!(matches!(
            parse_host("db:x", 5432),
            Err(ConfigError::InvalidPort(_))
        ));
        assert!(matches!(
            parse_host(":5432", 5432),
            Err(ConfigError::InvalidHost(_))
        ));
    }
}
