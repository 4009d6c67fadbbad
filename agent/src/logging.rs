//! Logging: one `tracing` subscriber for the whole process, writing to stderr or the journal.
//!
//! Log **events, not prose**: a short message plus fields (`info!(order_id = %id, "Order handed
//! over.")`). Privacy invariant: a log line never contains a payment card number (PAN), a full
//! loyalty number or a customer's contact details (name, e-mail, phone, address). Log the ids the
//! agent assigns (order id, event id, hashed loyalty id) and let a person look the rest up.
//!
//! [`init`] picks the output once, at start-up:
//!
//! | format     | output |
//! |------------|--------|
//! | `auto`     | the journal when systemd connected stderr to it; coloured text on a terminal; plain text with timestamps otherwise |
//! | `text`     | human-readable text (colours only on a terminal) |
//! | `json`     | one JSON object per line |
//! | `journald` | the journal's native protocol, with levels as priorities; an error if journald is not there |
//!
//! The filter is the configured level, unless the environment variable `RUST_LOG` is set.

use std::io::IsTerminal;

use anyhow::Context;
use serde::Deserialize;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, filter::LevelFilter};

/// How log lines are written (`logging.format` in the configuration file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Choose from where stderr goes: the journal under systemd, coloured text on a terminal,
    /// plain text with timestamps otherwise.
    #[default]
    Auto,
    /// Human-readable text on stderr.
    Text,
    /// One JSON object per line on stderr, for log shippers.
    Json,
    /// The systemd journal's native protocol, with structured fields.
    Journald,
}

impl LogFormat {
    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Auto => "auto",
            LogFormat::Text => "text",
            LogFormat::Json => "json",
            LogFormat::Journald => "journald",
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LogFormat {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(LogFormat::Auto),
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            "journald" => Ok(LogFormat::Journald),
            other => {
                anyhow::bail!("unknown log format {other:?}; expected auto, text, json or journald")
            }
        }
    }
}

/// Installs the process-wide subscriber. `level` is a `tracing` filter directive (like
/// `"info"`); `RUST_LOG`, when set and not empty, wins. Call it once per process: a second call
/// returns an error.
pub fn init(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (directive, source) = filter_directive(rust_log.as_deref(), level);
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse(directive)
        .with_context(|| format!("{source} {directive:?} is not a valid log filter"))?;

    let output = choose_output(format, stderr_target());
    let (layer, journald_error) = build_layer(output)?;
    tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init()
        .context("logging is already initialised in this process")?;

    if let Some(error) = journald_error {
        tracing::warn!(%error, "Cannot reach journald; logging plain text to stderr instead.");
    }
    tracing::debug!(format = %format, output = ?output, "Logging initialised.");
    Ok(())
}

/// Where stderr goes, as far as the choice of output is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StderrTarget {
    /// systemd connected stderr to the journal (`JOURNAL_STREAM` names this very stream).
    Journal,
    /// A terminal: a person is watching.
    Terminal,
    /// A file, a pipe or anything else.
    Other,
}

/// The concrete output chosen for a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// The journal's native protocol. `required` means failing to connect is an error;
    /// otherwise fall back to plain text on stderr without colours or timestamps (journald
    /// adds its own timestamp to each line).
    Journald { required: bool },
    /// Coloured text with timestamps, for a terminal.
    TerminalText,
    /// Plain text with timestamps, for files and pipes.
    PlainText,
    /// One JSON object per line.
    Json,
}

/// The filter directive to use and where it came from, for error messages.
fn filter_directive<'a>(rust_log: Option<&'a str>, level: &'a str) -> (&'a str, &'static str) {
    match rust_log {
        Some(env) if !env.trim().is_empty() => (env, "RUST_LOG"),
        _ => (level, "logging.level"),
    }
}

fn choose_output(format: LogFormat, stderr: StderrTarget) -> Output {
    match (format, stderr) {
        (LogFormat::Json, _) => Output::Json,
        (LogFormat::Journald, _) => Output::Journald { required: true },
        (LogFormat::Text | LogFormat::Auto, StderrTarget::Terminal) => Output::TerminalText,
        (LogFormat::Text, _) => Output::PlainText,
        (LogFormat::Auto, StderrTarget::Journal) => Output::Journald { required: false },
        (LogFormat::Auto, StderrTarget::Other) => Output::PlainText,
    }
}

/// The subscriber below the output layer: the registry with the filter on top.
type Filtered = Layered<EnvFilter, Registry>;
type BoxedLayer = Box<dyn Layer<Filtered> + Send + Sync>;

/// Builds the output layer. When an optional journald connection fails, the fallback layer is
/// returned with the error, to be logged once the subscriber is installed.
fn build_layer(output: Output) -> anyhow::Result<(BoxedLayer, Option<std::io::Error>)> {
    let fmt = || tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = match output {
        Output::Journald { required } => match tracing_journald::layer() {
            Ok(layer) => layer.boxed(),
            Err(e) if required => {
                return Err(e).context(
                    "cannot connect to journald (is /run/systemd/journal/socket there?); \
                     use logging.format = \"text\" outside systemd",
                );
            }
            Err(e) => return Ok((fmt().with_ansi(false).without_time().boxed(), Some(e))),
        },
        Output::TerminalText => fmt().with_ansi(true).boxed(),
        Output::PlainText => fmt().with_ansi(false).boxed(),
        Output::Json => fmt().json().flatten_event(true).with_ansi(false).boxed(),
    };
    Ok((layer, None))
}

/// Finds out where stderr goes. `JOURNAL_STREAM` alone is not enough: it is inherited by child
/// processes whose stderr may be redirected elsewhere, so it must name stderr's own device and
/// inode.
fn stderr_target() -> StderrTarget {
    let journal = std::env::var("JOURNAL_STREAM")
        .ok()
        .and_then(|value| parse_journal_stream(&value))
        .is_some_and(|stream| stderr_device_inode() == Some(stream));
    if journal {
        StderrTarget::Journal
    } else if std::io::stderr().is_terminal() {
        StderrTarget::Terminal
    } else {
        StderrTarget::Other
    }
}

/// Parses `JOURNAL_STREAM`, which systemd sets to `DEVICE:INODE` in decimal.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (device, inode) = value.trim().split_once(':')?;
    Some((device.parse().ok()?, inode.parse().ok()?))
}

/// The device and inode of stderr (file descriptor 2), as `fstat` reports them.
fn stderr_device_inode() -> Option<(u64, u64)> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a full `struct stat` into the buffer when it returns 0, and only then
    // is the buffer read.
    let stat = unsafe {
        if libc::fstat(libc::STDERR_FILENO, stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    // dev_t and ino_t are 32 bits on some targets (armv7) and 64 on others.
    #[allow(clippy::unnecessary_cast)]
    let device_inode = (stat.st_dev as u64, stat.st_ino as u64);
    Some(device_inode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("0:1\n"), Some((0, 1)));
        assert_eq!(
            parse_journal_stream("18446744073709551615:2"),
            Some((u64::MAX, 2))
        );
        for bad in ["", "8", "8:", ":1", "a:1", "8:x", "8:1:2", "-1:2"] {
            assert_eq!(parse_journal_stream(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn output_follows_format_and_stderr() {
        use StderrTarget::*;
        let cases = [
            (LogFormat::Auto, Journal, Output::Journald { required: false }),
            (LogFormat::Auto, Terminal, Output::TerminalText),
            (LogFormat::Auto, Other, Output::PlainText),
            (LogFormat::Text, Terminal, Output::TerminalText),
            (LogFormat::Text, Journal, Output::PlainText),
            (LogFormat::Text, Other, Output::PlainText),
            (LogFormat::Json, Terminal, Output::Json),
            (LogFormat::Json, Journal, Output::Json),
            (LogFormat::Journald, Other, Output::Journald { required: true }),
            (LogFormat::Journald, Terminal, Output::Journald { required: true }),
        ];
        for (format, stderr, expected) in cases {
            assert_eq!(
                choose_output(format, stderr),
                expected,
                "{format} with {stderr:?}"
            );
        }
    }

    #[test]
    fn rust_log_wins_over_the_configured_level() {
        assert_eq!(filter_directive(Some("debug"), "info"), ("debug", "RUST_LOG"));
        assert_eq!(filter_directive(None, "info"), ("info", "logging.level"));
        assert_eq!(filter_directive(Some("  "), "warn"), ("warn", "logging.level"));
    }

    #[test]
    fn stderr_identity_is_readable() {
        // fstat on fd 2 works in any test run; the value itself depends on the harness.
        assert!(stderr_device_inode().is_some());
    }

    #[test]
    fn formats_read_from_config_and_command_line() {
        #[derive(Deserialize)]
        struct Wrapper {
            format: LogFormat,
        }
        for format in [
            LogFormat::Auto,
            LogFormat::Text,
            LogFormat::Json,
            LogFormat::Journald,
        ] {
            let text = format!("format = \"{format}\"");
            assert_eq!(toml::from_str::<Wrapper>(&text).unwrap().format, format);
            assert_eq!(format.as_str().parse::<LogFormat>().unwrap(), format);
        }
        assert!("Text".parse::<LogFormat>().is_err());
        assert!(toml::from_str::<Wrapper>("format = \"xml\"").is_err());
        assert_eq!(LogFormat::default(), LogFormat::Auto);
    }

    #[test]
    fn every_output_layer_builds() {
        for output in [
            Output::TerminalText,
            Output::PlainText,
            Output::Json,
            Output::Journald { required: false },
        ] {
            let (_layer, _journald_error) = build_layer(output).unwrap();
        }
    }

    #[test]
    fn init_installs_once_then_refuses() {
        // Another test in this binary may have installed a subscriber first, so the first call
        // may already be refused; the second one must be.
        let first = init(LogFormat::Text, "warn");
        if let Err(error) = &first {
            assert!(format!("{error:#}").contains("already initialised"), "{error:#}");
        }
        let error = init(LogFormat::Text, "warn").unwrap_err();
        assert!(format!("{error:#}").contains("already initialised"), "{error:#}");
    }

    #[test]
    fn init_rejects_a_bad_level() {
        // Checked before anything is installed, so it does not disturb the test above (unless
        // RUST_LOG is set, which wins over the level).
        if std::env::var_os("RUST_LOG").is_none() {
            let error = init(LogFormat::Text, "info,foo=loud").unwrap_err();
            assert!(format!("{error:#}").contains("logging.level"), "{error:#}");
        }
    }
}
