//! "Did you mean" for unknown configuration keys.

use crate::error::ConfigError;
use crate::model::Config;

/// Builds the error for an unknown dotted key, suggesting the nearest key that exists at the same level.
pub(crate) fn unknown_key(key: &str) -> ConfigError {
    let (parent, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    let defaults = serde_yaml::to_value(Config::default()).unwrap_or_default();
    let mut level = &defaults;
    for part in parent.split('.').filter(|p| !p.is_empty()) {
        match level.get(part) {
            Some(next) => level = next,
            None => return ConfigError::UnknownKey { key: key.to_owned(), suggestion: None },
        }
    }
    let suggestion = level
        .as_mapping()
        .into_iter()
        .flat_map(|m| m.keys())
        .filter_map(|k| k.as_str())
        .map(|candidate| (strsim::jaro_winkler(leaf, candidate), candidate))
        .filter(|(score, _)| *score >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| if parent.is_empty() { candidate.to_owned() } else { format!("{parent}.{candidate}") });
    ConfigError::UnknownKey { key: key.to_owned(), suggestion }
}
