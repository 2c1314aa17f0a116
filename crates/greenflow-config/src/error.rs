//! Errors of loading and validating settings. Each message names the key or variable and the fix.

use std::path::{Path, PathBuf};

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` names a file that does not exist.
    #[error("config file `{}` does not exist; check the --config path or run `greenflow init`", path.display())]
    ConfigFileMissing {
        /// The path given.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML did not match the model (wrong type, bad value).
    #[error("{message}")]
    Invalid {
        /// serde's message, which names the key and the position.
        message: String,
    },
    /// A key the model does not know.
    #[error("unknown key `{key}`{}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_else(|| "; see `greenflow config show` for the valid keys".into()))]
    UnknownKey {
        /// The dotted path of the key.
        key: String,
        /// The nearest valid key, if one is close.
        suggestion: Option<String>,
    },
    /// A value that parses but cannot be used.
    #[error("{key}: `{value}` is not valid: {fix}")]
    Value {
        /// The dotted key or the variable name.
        key: String,
        /// The offending value.
        value: String,
        /// What to do instead.
        fix: String,
    },
    /// `.secrets.env` is malformed. Only the line number is given: the line may hold a secret.
    #[error(
        "`{}` line {line} cannot be parsed: write NAME=value, quoting a value that holds blanks, quotes or '#' \
         (the line is not shown: it may hold a secret)",
        path.display()
    )]
    SecretsFile {
        /// The file.
        path: PathBuf,
        /// The line (1-based) the parser stopped at.
        line: usize,
    },
    /// A secret variable holds a value that cannot be used as it is. The value is never part of the message.
    #[error("{var} {problem}; {fix}")]
    Secret {
        /// The variable, and the file it came from when it was not the process environment.
        var: String,
        /// What is wrong with the value.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// A variable greenflow reads holds bytes that are not UTF-8 (the value is not shown).
    #[error("{var} is not valid UTF-8 text; set it to UTF-8 or unset it")]
    NotUtf8 {
        /// The variable.
        var: String,
    },
    /// No home directory and no XDG variables: nowhere to keep data.
    #[error("cannot find a home directory; set HOME, XDG_DATA_HOME or paths.data_dir")]
    NoHome,
    /// More than one of the above, all found in one validation pass (each is one line of the message).
    #[error("{}", several(errors))]
    Several {
        /// The problems, in the order of the checks.
        errors: Vec<ConfigError>,
    },
    /// Any of the above, found in a given configuration file. The message holds the inner one (it is not a
    /// `source`, so that a chain printed with `{:#}` says it once).
    #[error("{}: {error}", path.display())]
    InFile {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong in it.
        error: Box<ConfigError>,
    },
}

/// One problem per line, after a count.
fn several(errors: &[ConfigError]) -> String {
    let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
    format!("{} problems, each to fix:\n{}", errors.len(), lines.join("\n"))
}

impl ConfigError {
    /// A [`ConfigError::Value`] built from borrowed parts.
    pub fn value(key: &str, value: &str, fix: &str) -> Self {
        Self::Value { key: key.to_owned(), value: value.escape_debug().to_string(), fix: fix.to_owned() }
    }

    /// Attaches the file the error was found in (to each of several).
    pub(crate) fn in_file(self, path: &Path) -> Self {
        match self {
            Self::Several { errors } => Self::Several { errors: errors.into_iter().map(|e| e.in_file(path)).collect() },
            other => Self::InFile { path: path.to_owned(), error: Box::new(other) },
        }
    }
}
