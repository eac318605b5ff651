//! How the daemons and the CLI log: events on stderr, as text or as JSON lines,
//! filtered RUST_LOG-style. The one thing to know is the order in which the
//! settings win. The filter: `--log-filter`, else `RUST_LOG`, else `-v` (info) or
//! `-vv` (debug), else a daemon config file's `log_filter`, else
//! `warn,archon=info`. The format: `--log-format` (or `ARCHON_LOG_FORMAT`), else
//! the file's `log_format`, else text.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// The filter when nothing says otherwise: warnings, and what Archon's crates
/// report at info (a directive's target matches by prefix: `archon_core` too).
pub const DEFAULT_FILTER: &str = "warn,archon=info";

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: time, level, the spans with their fields, the message, the fields.
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `message` and the event's
    /// fields, `target`, and `span`/`spans` with the enclosing spans' fields.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("{s:?} is not a log format (text or json)")),
        }
    }
}

/// Logging settings: flags of the daemons and (global) of `archon`, and the
/// `log_format` / `log_filter` keys of the daemons' config files.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct LogOptions {
    /// How log lines look: text or json (one object a line) [default: text].
    #[arg(
        id = "log_format",
        long = "log-format",
        global = true,
        env = "ARCHON_LOG_FORMAT",
        value_name = "FORMAT",
        value_parser = parse_format
    )]
    pub format: Option<LogFormat>,
    /// Which events to log, RUST_LOG-style: a level (debug) or target=level
    /// directives (archon_core=debug,info) [default: $RUST_LOG, else warn,archon=info].
    #[arg(
        id = "log_filter",
        long = "log-filter",
        global = true,
        value_name = "DIRECTIVES",
        value_parser = parse_filter
    )]
    pub filter: Option<String>,
}

impl LogOptions {
    /// Takes a config file's `log_format` and `log_filter`, naming the key on error.
    pub fn apply_keys(&mut self, format: Option<String>, filter: Option<String>) -> anyhow::Result<()> {
        if let Some(f) = format {
            self.format = Some(f.parse().map_err(|e| anyhow::anyhow!("log_format: {e}"))?);
        }
        if let Some(f) = filter {
            self.filter = Some(parse_filter(&f).map_err(|e| anyhow::anyhow!("log_filter: {e}"))?);
        }
        Ok(())
    }
}

fn parse_format(s: &str) -> Result<LogFormat, String> {
    s.parse()
}

/// Checks RUST_LOG-style directives; they are kept as given, less the space
/// around each (see [`tidy`]).
fn parse_filter(s: &str) -> Result<String, String> {
    let try_ = "try info, or archon_core=debug,warn";
    if s.trim().is_empty() {
        return Err(format!("the filter is empty ({try_})"));
    }
    match EnvFilter::builder().parse(tidy(s)) {
        Ok(_) => Ok(tidy(s)),
        Err(e) => Err(format!("{s:?} is not a filter: {e} ({try_})")),
    }
}

/// The directives without the space around each. tracing-subscriber 0.3 reads
/// a directive's characters from its trimmed text but slices the untrimmed
/// one, so a directive after a space misparses, or panics (`--log-filter " ໐="`).
fn tidy(directives: &str) -> String {
    directives.split(',').map(str::trim).collect::<Vec<_>>().join(",")
}

/// Installs the process's subscriber (once; later calls do nothing): `flags`
/// over `file`, the settings a daemon's config file gave (see the module's docs).
pub fn init(flags: &LogOptions, verbose: u8, file: &LogOptions) {
    let format = flags.format.or(file.format).unwrap_or_default();
    let env = std::env::var("RUST_LOG").ok().filter(|s| !s.trim().is_empty());
    let filter = match (&flags.filter, env) {
        (Some(directives), _) => EnvFilter::builder().parse_lossy(directives),
        // As tracing does for RUST_LOG: a bad directive is reported and skipped.
        (None, Some(env)) => EnvFilter::builder().parse_lossy(tidy(&env)),
        (None, None) => EnvFilter::builder().parse_lossy(match verbose {
            0 => file.filter.as_deref().unwrap_or(DEFAULT_FILTER),
            1 => "info",
            _ => "debug",
        }),
    };
    let subscriber = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => subscriber.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => subscriber.json().flatten_event(true).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_are_global_on_archon_and_parse_after_a_subcommand() {
        use clap::{CommandFactory, Parser};
        crate::cli::Cli::command().debug_assert();
        let cli = crate::cli::Cli::try_parse_from(["archon", "dev", "--log-format", "json", "--log-filter", "debug"]);
        let log = cli.unwrap().log;
        assert_eq!((log.format, log.filter.as_deref()), (Some(LogFormat::Json), Some("debug")));
    }

    #[test]
    fn bad_settings_name_the_key_and_the_accepted_forms() {
        let mut o = LogOptions::default();
        let e = o.apply_keys(Some("yaml".into()), None).unwrap_err().to_string();
        assert_eq!(e, "log_format: \"yaml\" is not a log format (text or json)");
        let e = o.apply_keys(None, Some("archon_core=loud".into())).unwrap_err().to_string();
        assert!(e.starts_with("log_filter: \"archon_core=loud\" is not a filter"), "{e}");
        assert!(e.contains("try info, or archon_core=debug,warn"), "{e}");
        o.apply_keys(Some("JSON".into()), Some("archon_core=debug,info".into())).unwrap();
        assert_eq!(o.format, Some(LogFormat::Json));
        assert_eq!(o.filter.as_deref(), Some("archon_core=debug,info"));
    }
}
