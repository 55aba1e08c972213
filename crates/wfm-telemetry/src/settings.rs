//! Layered settings for the binaries: built-in defaults, then an optional TOML file, then
//! `WFM_*` environment variables, then command-line flags.
//!
//! clap alone does the layering: the clap definition of a binary is the one list of its
//! settings, with each one's flag, variable, default and parser. A file's keys are the
//! settings' ids (the flag without `--`, with `_` for `-`); each value found in the file
//! becomes that argument's default before parsing, so clap's own order (flag, then
//! environment, then default) puts the file between the defaults and the environment, and
//! every value, from wherever it came, goes through the same parser. Every error is one
//! line naming the setting, the value and what is allowed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgMatches, Command, CommandFactory, FromArgMatches};

/// The id of the argument that names the settings file.
pub const CONFIG_ARG: &str = "config";

/// Why the settings cannot be used: the one error type of every binary's settings and of
/// the services' config checks. Every variant but `Display` displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `--help` or `--version` was asked for: print it and exit successfully.
    #[error("{0}")]
    Display(clap::Error),
    /// A file named by a setting (the config file, a profile file) cannot be used.
    #[error("invalid {what} {path}: {problem}")]
    File {
        /// What the file is, e.g. `config file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        problem: String,
    },
    /// The command line is malformed, e.g. an unknown flag: clap's first line.
    #[error("{0}")]
    Usage(String),
    /// A value, from wherever it came, is not allowed.
    #[error("invalid setting {setting} = {value:?}: {allowed}")]
    Invalid {
        /// The setting: its id, or [`describe`]d with all its names by a binary.
        setting: String,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
}

impl SettingsError {
    /// The value `value` of setting `setting` is not allowed: `allowed` is.
    pub fn invalid(
        setting: impl Into<String>,
        value: impl ToString,
        allowed: impl Into<String>,
    ) -> Self {
        SettingsError::Invalid {
            setting: setting.into(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }

    /// Names an invalid setting's id in all its forms in `command`.
    pub fn described(self, command: &Command) -> Self {
        match self {
            SettingsError::Invalid {
                setting,
                value,
                allowed,
            } => SettingsError::Invalid {
                setting: describe(command, &setting),
                value,
                allowed,
            },
            other => other,
        }
    }

    /// Prints help or version and exits 0, or prints the one-line error and exits 2.
    pub fn exit(self) -> ! {
        match self {
            SettingsError::Display(help) => help.exit(),
            other => {
                eprintln!("error: {other}");
                std::process::exit(2);
            }
        }
    }
}

/// How a setting is named everywhere: `--flag (ENV, `key` in the config file)`.
pub fn describe(command: &Command, id: &str) -> String {
    let Some(arg) = command.get_arguments().find(|a| a.get_id() == id) else {
        return id.to_string();
    };
    let flag = arg
        .get_long()
        .map_or_else(|| id.to_string(), |l| format!("--{l}"));
    match arg.get_env() {
        Some(env) => format!(
            "{flag} ({}, `{id}` in the config file)",
            env.to_string_lossy()
        ),
        None => format!("{flag} (`{id}` in the config file)"),
    }
}

/// The settings file, as clap reads `--config` or its variable; any other error is left
/// to the real parse.
fn config_path(args: &[OsString], command: &Command) -> Option<PathBuf> {
    command
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(args)
        .ok()?
        .get_one::<PathBuf>(CONFIG_ARG)
        .cloned()
}

/// A value of the file as the string clap would get on the command line.
fn render(value: &toml::Value) -> Option<Vec<String>> {
    Some(match value {
        toml::Value::String(s) => vec![s.clone()],
        toml::Value::Integer(i) => vec![i.to_string()],
        toml::Value::Float(f) => vec![f.to_string()],
        toml::Value::Boolean(b) => vec![b.to_string()],
        toml::Value::Array(items) => items
            .iter()
            .map(|item| render(item).and_then(|mut v| v.pop()))
            .collect::<Option<Vec<_>>>()?,
        toml::Value::Datetime(_) | toml::Value::Table(_) => return None,
    })
}

/// Applies the file at `path` to `command` as argument defaults.
fn apply_file(mut command: Command, path: &Path) -> Result<Command, SettingsError> {
    let fail = |problem: String| SettingsError::File {
        what: "config file",
        path: path.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        let first = e.to_string().lines().next().unwrap_or_default().to_string();
        fail(format!("not valid TOML: {first}"))
    })?;
    let ids: Vec<String> = command
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| id != CONFIG_ARG && id != "help" && id != "version")
        .collect();
    for (key, value) in table {
        if !ids.contains(&key) {
            let allowed = ids.join(", ");
            return Err(fail(format!("unknown setting `{key}`; allowed: {allowed}")));
        }
        let Some(values) = render(&value) else {
            return Err(fail(format!(
                "setting `{key}` must be a string, number, boolean or array"
            )));
        };
        // clap keeps defaults as `&'static str` (without its `string` feature); a handful
        // of short strings leaked once at start-up is the price of reusing its parsing.
        let values: Vec<&'static str> = values
            .into_iter()
            .map(|v| &*Box::leak(v.into_boxed_str()))
            .collect();
        command = command.mut_arg(key.as_str(), |arg| {
            if values.len() == 1 && !value.is_array() {
                arg.default_value(values[0])
            } else {
                arg.default_values(values)
            }
        });
    }
    Ok(command)
}

/// One line for a clap error: the setting, the value and what is allowed.
fn one_line(command: &Command, error: &clap::Error) -> SettingsError {
    let context = |kind| match error.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(s)) => Some(s.join(", ")),
        _ => None,
    };
    let arg = context(ContextKind::InvalidArg).unwrap_or_default();
    // `--listen <LISTEN>` → the argument's id, to name it in all its forms.
    let long = arg
        .trim_start_matches("--")
        .split([' ', '='])
        .next()
        .unwrap_or_default();
    let id = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .map(|a| a.get_id().to_string())
        .unwrap_or_else(|| long.to_string());
    let setting = describe(command, &id);
    match error.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let value = context(ContextKind::InvalidValue).unwrap_or_default();
            let allowed = match context(ContextKind::ValidValue) {
                Some(valid) => format!("allowed: {valid}"),
                None => std::error::Error::source(error)
                    .map_or_else(|| "not allowed".to_string(), |s| s.to_string()),
            };
            SettingsError::invalid(setting, value, allowed)
        }
        _ => {
            let line = error.to_string();
            let line = line
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default();
            SettingsError::Usage(line.trim_start_matches("error: ").to_string())
        }
    }
}

/// Parses `args` (with the program name first) into `T`, layering the settings file.
pub fn parse_from<T: CommandFactory + FromArgMatches>(
    args: Vec<OsString>,
) -> Result<(T, ArgMatches), SettingsError> {
    let mut command = T::command();
    if let Some(path) = config_path(&args, &command) {
        command = apply_file(command, &path)?;
    }
    let matches = command
        .clone()
        .try_get_matches_from(args)
        .map_err(|e| match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => SettingsError::Display(e),
            _ => one_line(&command, &e),
        })?;
    let parsed = T::from_arg_matches(&matches).map_err(|e| one_line(&command, &e))?;
    Ok((parsed, matches))
}

/// Parses the process's arguments into `T`, layering the settings file.
pub fn parse<T: CommandFactory + FromArgMatches>() -> Result<T, SettingsError> {
    parse_from(std::env::args_os().collect()).map(|(parsed, _)| parsed)
}

/// A clap value parser for a whole number of at least `N`, with a message saying so.
pub fn at_least<const N: u64>(text: &str) -> Result<u64, String> {
    let value: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a whole number, at least {N}"))?;
    if value < N {
        return Err(format!("must be at least {N}"));
    }
    Ok(value)
}

/// A secret given inline (setting `inline_id`) or in a file (setting `file_id`): the id of
/// the setting that gave it and its bytes, or `None` when neither is set. An unreadable file
/// is an invalid setting of `command`.
pub fn secret(
    command: &Command,
    (inline_id, inline): (&'static str, Option<&str>),
    (file_id, file): (&'static str, Option<&Path>),
) -> Result<Option<(&'static str, Vec<u8>)>, SettingsError> {
    if let Some(value) = inline {
        return Ok(Some((inline_id, value.as_bytes().to_vec())));
    }
    let Some(path) = file else {
        return Ok(None);
    };
    let bytes = read_secret_file(path).map_err(|error| {
        let setting = describe(command, file_id);
        SettingsError::invalid(
            setting,
            path.display(),
            format!("a readable file ({error})"),
        )
    })?;
    Ok(Some((file_id, bytes)))
}

/// The signing keys of a service: `current` (given by setting `id`) and the previous keys
/// in `previous_file`, each checked by [`wfm_reference::check_key`]; a refusal names the
/// setting and never the key.
pub fn key_ring(
    id: &'static str,
    current: &[u8],
    previous_file: Option<&Path>,
) -> Result<wfm_reference::KeyRing, SettingsError> {
    use wfm_reference::ConfiguredKeyError;
    let previous = previous_file
        .map(|path| {
            read_secret_file(path).map_err(|error| {
                SettingsError::invalid(
                    "previous_signing_keys_file",
                    path.display(),
                    format!("a readable file ({error})"),
                )
            })
        })
        .transpose()?;
    let previous = previous.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    wfm_reference::KeyRing::configured(current, previous.as_deref()).map_err(|error| match error {
        ConfiguredKeyError::Current(problem) => SettingsError::invalid(
            id,
            format!("<{} bytes, redacted>", current.len()),
            problem.to_string(),
        ),
        ConfiguredKeyError::Previous { line, problem } => SettingsError::invalid(
            "previous_signing_keys_file",
            format!("<line {line}, redacted>"),
            problem.to_string(),
        ),
    })
}

/// Reads a secret from `file`: the whole content without its trailing line break, as a
/// Kubernetes secret volume or a Docker secret mounts it.
pub fn read_secret_file(file: &Path) -> Result<Vec<u8>, std::io::Error> {
    let mut bytes = std::fs::read(file)?;
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::SocketAddr;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Args {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, env = "WFM_TEST_SETTINGS_LISTEN", default_value = "127.0.0.1:1")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 3)]
        streams: u32,
        #[arg(long, value_delimiter = ',')]
        origins: Vec<String>,
        #[arg(long)]
        json: bool,
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("prog")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn file(text: &str) -> tempfile::TempPath {
        let path = std::env::temp_dir().join(format!(
            "wfm-settings-{}-{}.toml",
            std::process::id(),
            text.len()
        ));
        std::fs::write(&path, text).unwrap();
        tempfile::TempPath(path)
    }

    mod tempfile {
        pub(super) struct TempPath(pub(super) std::path::PathBuf);
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn the_file_overrides_defaults_and_flags_override_the_file() {
        let config = file("streams = 7\norigins = [\"a\", \"b\"]\njson = true\n");
        let path = config.0.to_str().unwrap();
        let (parsed, _) = parse_from::<Args>(args(&["--config", path])).unwrap();
        assert_eq!(parsed.streams, 7);
        assert_eq!(parsed.origins, ["a", "b"]);
        assert!(parsed.json);
        let (parsed, _) =
            parse_from::<Args>(args(&[&format!("--config={path}"), "--streams", "9"])).unwrap();
        assert_eq!(parsed.streams, 9);
        let (parsed, _) = parse_from::<Args>(args(&[])).unwrap();
        assert_eq!(parsed.streams, 3);
    }

    #[test]
    fn errors_are_one_line_naming_setting_value_and_what_is_allowed() {
        let error = parse_from::<Args>(args(&["--listen", "nowhere"]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "invalid setting --listen (WFM_TEST_SETTINGS_LISTEN, `listen` in the config file) \
             = \"nowhere\": invalid socket address syntax"
        );
        let config = file("listen = \"127.0.0.1:2\"\nstreems = 1\n");
        let error = parse_from::<Args>(args(&["--config", config.0.to_str().unwrap()]))
            .unwrap_err()
            .to_string();
        assert!(
            error.ends_with("unknown setting `streems`; allowed: listen, streams, origins, json"),
            "{error}"
        );
        assert!(!error.contains('\n'));
    }

    #[test]
    fn secret_files_lose_their_trailing_newline() {
        let secret = file("s3cr3t-key\n");
        assert_eq!(read_secret_file(&secret.0).unwrap(), b"s3cr3t-key");
    }

    #[test]
    fn a_secret_comes_inline_or_from_its_file_and_names_the_setting_that_gave_it() {
        let command = clap::Command::new("t");
        let key = file("from-file\n");
        let inline = secret(
            &command,
            ("key", Some("inline")),
            ("key_file", Some(&key.0)),
        )
        .unwrap();
        assert_eq!(inline, Some(("key", b"inline".to_vec())));
        let filed = secret(&command, ("key", None), ("key_file", Some(&key.0))).unwrap();
        assert_eq!(filed, Some(("key_file", b"from-file".to_vec())));
        assert_eq!(
            secret(&command, ("key", None), ("key_file", None)).unwrap(),
            None
        );
        let missing = std::path::Path::new("/nonexistent/key");
        let error = secret(&command, ("key", None), ("key_file", Some(missing)))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("invalid setting key_file = \"/nonexistent/key\": a readable file"),
            "{error}"
        );
    }
}
