//! The one output path: results on stdout (text or JSON), diagnostics and logs on stderr, colour
//! only on a terminal and never with NO_COLOR, and everything through the redactor.

use std::io::{IsTerminal as _, Write as _};
use std::sync::{Arc, RwLock};

use hoist_core::secret::Redactor;

use crate::cli::{ColorChoice, Global};

#[derive(Debug, Clone)]
pub struct Output {
    pub json: bool,
    stdout_color: bool,
    stderr_color: bool,
    /// The redactor of the loaded project, once there is one; logs and errors pass through it.
    redactor: Arc<RwLock<Redactor>>,
}

fn wants_color(choice: ColorChoice, is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

impl Output {
    pub fn new(global: &Global) -> Output {
        let out = Output {
            json: global.json,
            stdout_color: wants_color(global.color, std::io::stdout().is_terminal()),
            stderr_color: wants_color(global.color, std::io::stderr().is_terminal()),
            redactor: Arc::new(RwLock::new(Redactor::new())),
        };
        out.init_logging();
        out
    }

    fn init_logging(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_env("HOIST_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let redactor = self.redactor.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(self.stderr_color)
            .with_writer(move || RedactingWriter {
                redactor: redactor.clone(),
                buf: Vec::new(),
            })
            .try_init();
    }

    /// Makes every later log line and error pass through this project's redactor.
    pub fn use_redactor(&self, r: &Redactor) {
        if let Ok(mut slot) = self.redactor.write() {
            *slot = r.clone();
        }
    }

    /// `s` with every known secret masked.
    pub fn redacted(&self, s: &str) -> String {
        self.redact(s)
    }

    fn redact(&self, s: &str) -> String {
        self.redactor
            .read()
            .map(|r| r.redact(s))
            .unwrap_or_else(|_| s.to_owned())
    }

    pub fn color(&self) -> bool {
        self.stdout_color
    }

    pub fn stderr_color(&self) -> bool {
        self.stderr_color
    }

    /// A result on stdout.
    pub fn print(&self, text: &str) {
        let text = self.redact(text);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// A diagnostic or progress line on stderr.
    pub fn eprint(&self, text: &str) {
        let text = self.redact(text);
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
    }

    pub fn error(&self, message: &str) {
        let head = if self.stderr_color {
            "\x1b[1;31merror\x1b[0m"
        } else {
            "error"
        };
        self.eprint(&format!("{head}: {message}\n"));
    }
}

/// Buffers one log event and writes it redacted to stderr when dropped.
struct RedactingWriter {
    redactor: Arc<RwLock<Redactor>>,
    buf: Vec<u8>,
}

impl std::io::Write for RedactingWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactingWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let text = self
            .redactor
            .read()
            .map(|r| r.redact(&text))
            .unwrap_or_default();
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}
