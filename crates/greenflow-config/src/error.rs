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
    /// `.secrets.env` is malformed.
    #[error("cannot parse `{}`; each line must be NAME=value", path.display())]
    SecretsFile {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: dotenvy::Error,
    },
    /// No home directory and no XDG variables: nowhere to keep data.
    #[error("cannot find a home directory; set HOME, XDG_DATA_HOME or paths.data_dir")]
    NoHome,
    /// Any of the above, found in a given configuration file.
    #[error("{}: {source}", path.display())]
    InFile {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong in it.
        source: Box<ConfigError>,
    },
}

impl ConfigError {
    /// A [`ConfigError::Value`] built from borrowed parts.
    pub fn value(key: &str, value: &str, fix: &str) -> Self {
        Self::Value { key: key.to_owned(), value: value.escape_debug().to_string(), fix: fix.to_owned() }
    }

    /// Attaches the file the error was found in.
    pub(crate) fn in_file(self, path: &Path) -> Self {
        Self::InFile { path: path.to_owned(), source: Box::new(self) }
    }
}
